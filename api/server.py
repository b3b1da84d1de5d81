"""Serving an app with uvicorn on the kernel's own event loop.

The socket is bound here, before uvicorn sees it, so a port in use is one clear
``KernosError`` instead of uvicorn's ``sys.exit`` from inside a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from kernos.kernel.errors import ConfigError, KernelUnavailable, KernosError

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0
"""How long stopping waits for requests in flight (a long ``wait`` run) before cancelling."""


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the kernel's owner (``kernos up``, a test) handles
    SIGINT/SIGTERM and stops the kernel, which stops this server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening); ``KernosError`` if it can't be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise KernosError(
            f"cannot listen on {host}:{port}: unknown host ({exc.strerror}); set KERNOS_API_HOST",
            code="address_unavailable",
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restarted kernel rebind while old connections sit in TIME_WAIT; on Linux it
        # never lets two servers listen on one port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise KernosError(
                f"cannot listen on {host}:{port}: address already in use; "
                "set KERNOS_API_PORT or stop the other server",
                code="address_in_use",
            ) from None
        raise KernosError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "set KERNOS_API_HOST/KERNOS_API_PORT",
            code="address_unavailable",
        ) from None
    return sock


class ApiServer:
    """An app served by uvicorn as a task on the running loop."""

    def __init__(
        self,
        app: FastAPI,
        *,
        host: str,
        port: int,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.scheme = "https" if tls_cert is not None else "http"
        self._config = uvicorn.Config(
            app,
            ssl_certfile=None if tls_cert is None else str(tls_cert),
            ssl_keyfile=None if tls_key is None else str(tls_key),
            log_level="warning",
            log_config=None,  # keep the kernel's logging setup; uvicorn's loggers propagate
            lifespan="off",
            timeout_graceful_shutdown=int(STOP_GRACE_SECONDS),
        )
        self._server = _Server(self._config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Base URL clients use."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    async def start(self) -> None:
        """Bind, start serving, and return once uvicorn accepts connections."""
        if self._config.ssl_certfile is not None:
            try:
                self._config.load()  # reads the certificate and key now: a clear error early
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"cannot serve HTTPS with {self._config.ssl_certfile} and "
                    f"{self._config.ssl_keyfile}: {exc}; check KERNOS_API_TLS_CERT/KEY"
                ) from None
        sock = bind(self.host, self.port)
        self._task = asyncio.create_task(self._serve(sock), name="kernos-api")
        while not self._server.started:
            if self._task.done():
                sock.close()
                self._task.result()  # raises what stopped it
                raise KernelUnavailable(f"the API server on {self.url} stopped while starting")
            await asyncio.sleep(0.01)
        log.info("API listening on %s", self.url, extra={"url": self.url})

    async def _serve(self, sock: socket.socket) -> None:
        try:
            await self._server.serve(sockets=[sock])
        except SystemExit:
            # uvicorn exits the process on a startup failure; in a task that would end the
            # kernel's loop without cleanup, so turn it into an error.
            raise KernelUnavailable(f"the API server on {self.url} could not start") from None

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (briefly), and wait for the task."""
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        except Exception:
            log.exception("the API server failed while stopping")
        finally:
            self._task = None


__all__ = ["ApiServer", "bind"]
