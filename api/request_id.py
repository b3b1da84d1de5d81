"""``X-Request-ID``: every response carries one, echoing the caller's when it is well formed.

A client (or a proxy in front of the kernel) that sends ``X-Request-ID`` gets the same id back
and finds it in the kernel's log lines for that request; without one, or with a malformed one
(over 128 characters, or characters outside ``[A-Za-z0-9._:-]``), the kernel makes a UUID. The
id is on ``request.state.request_id`` for routes, problem responses included.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

log = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Pure ASGI middleware (no buffering, so streamed responses stay streamed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k == HEADER.encode()),
            None,
        )
        request_id = given if given and _VALID.match(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != HEADER.encode()]
                headers.append((HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
