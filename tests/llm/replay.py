"""A tiny HTTP server that replays recorded LLM-server exchanges (``recordings/*.json``).

It stands in for a server we cannot run here (vLLM needs a GPU): each recording holds the
request a client sends (method, path, and the JSON fields that matter) and the server's
answer (status, JSON, Prometheus text, or a list of server-sent event payloads). The test
installs the recordings it needs; the server answers each route with its recording and keeps
every request it received for the test to inspect.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).with_name("recordings")


def recording(name: str) -> dict[str, Any]:
    """The recorded exchange ``recordings/NAME.json``."""
    data: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text())
    return data


class ReplayServer:
    """Serves installed recordings on ``127.0.0.1``; ``received`` lists the requests."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

            def do_GET(self) -> None:
                replay._answer(self, "GET")

            def do_POST(self) -> None:
                replay._answer(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def install(self, *names: str) -> None:
        """Answer the routes of these recordings with them (replacing earlier ones)."""
        for name in names:
            exchange = recording(name)
            request = exchange["request"]
            self.routes[(request["method"], request["path"])] = exchange

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.received.append(
            {"method": method, "path": path, "json": body, "headers": dict(handler.headers)}
        )
        exchange = self.routes.get((method, path))
        if exchange is None:
            self._send(handler, 404, "application/json", b'{"detail": "Not Found"}')
            return
        response = exchange["response"]
        status = int(response.get("status", 200))
        if "sse" in response:
            handler.send_response(status)
            handler.send_header("content-type", "text/event-stream; charset=utf-8")
            handler.send_header("connection", "close")
            handler.end_headers()
            for event in response["sse"]:
                payload = event if isinstance(event, str) else json.dumps(event)
                handler.wfile.write(f"data: {payload}\n\n".encode())
                handler.wfile.flush()
            handler.close_connection = True
        elif "text" in response:
            content_type = response.get("content_type", "text/plain; charset=utf-8")
            self._send(handler, status, content_type, response["text"].encode())
        else:
            self._send(handler, status, "application/json", json.dumps(response["json"]).encode())

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, content_type: str, data: bytes) -> None:
        handler.send_response(status)
        handler.send_header("content-type", content_type)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
