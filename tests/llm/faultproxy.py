"""A fault-injecting TCP proxy for tests, switchable at run time.

It listens on a port of its own and, per mode:

* ``pass``: forwards bytes both ways to the upstream server;
* ``refuse``: closes its listening socket, so connections are refused (a stopped server);
* ``status``: answers every HTTP request with ``status`` (503 unless told) and closes;
* ``hang``: accepts and reads, and never answers (a wedged server);
* ``cut``: forwards, but closes the connection once ``after`` bytes of the answer went
  through (a server that dies mid-answer).

Switching modes closes the connections open at that moment, so pooled keep-alive connections
cannot carry the old mode on. It runs its own event loop in a thread, so sync and async
tests can use it alike::

    with FaultProxy("127.0.0.1", 8000) as proxy:
        proxy.url            # http://127.0.0.1:PORT
        proxy.set_mode("status", status=502)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any, Literal

Mode = Literal["pass", "refuse", "status", "hang", "cut"]


class FaultProxy:
    """A TCP proxy in front of ``upstream_host:upstream_port`` that can fail on purpose."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.status = 503
        self.after = 0
        self.connections = 0  # accepted so far, for tests that check a retry reached us
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the proxy's address."""
        return f"http://127.0.0.1:{self.port}"

    # -- Control (from any thread) ----------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start listening in ``pass`` mode."""
        self._thread.start()
        self._run(self._listen())
        return self

    def set_mode(self, mode: Mode, *, status: int = 503, after: int = 0) -> None:
        """Switch mode; connections open now are closed."""
        self._run(self._switch(mode, status, after))

    def stop(self) -> None:
        """Close everything and end the thread."""
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # -- On the proxy's loop ----------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def _switch(self, mode: Mode, status: int, after: int) -> None:
        self.mode, self.status, self.after = mode, status, after
        for writer in list(self._writers):
            writer.close()
        if mode == "refuse":
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
        else:
            await self._listen()

    async def _shutdown(self) -> None:
        await self._switch("refuse", 503, 0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.mode == "status":
                await self._answer_status(reader, writer)
            elif self.mode == "hang":
                while await reader.read(65536):
                    pass  # read what comes, answer nothing, until the client gives up
            else:
                await self._forward(
                    reader, writer, cut_after=self.after if self.mode == "cut" else None
                )
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer_status(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request head; the body is not needed
        body = b'{"error": {"message": "injected by the fault proxy", "code": %d}}' % self.status
        writer.write(
            b"HTTP/1.1 %d Injected\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (self.status, len(body), body)
        )
        await writer.drain()

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, cut_after: int | None
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers.add(up_writer)

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, limit: int | None
        ) -> None:
            sent = 0
            try:
                while chunk := await src.read(65536):
                    if limit is not None and sent + len(chunk) >= limit:
                        dst.write(chunk[: max(0, limit - sent)])
                        await dst.drain()
                        return
                    dst.write(chunk)
                    await dst.drain()
                    sent += len(chunk)
            except ConnectionError:
                return

        upstream = asyncio.ensure_future(pump(reader, up_writer, None))
        downstream = asyncio.ensure_future(pump(up_reader, writer, cut_after))
        try:
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            upstream.cancel()
            downstream.cancel()
            await asyncio.gather(upstream, downstream, return_exceptions=True)
            self._writers.discard(up_writer)
            up_writer.close()
