"""``X-Request-ID`` and W3C ``traceparent`` on every request.

Every response carries an ``X-Request-ID``, echoing the caller's when it is well formed.

A client (or a proxy in front of the kernel) that sends ``X-Request-ID`` gets the same id back
and finds it in the kernel's log lines for that request; without one, or with a malformed one
(over 128 characters, or characters outside ``[A-Za-z0-9._:-]``), the kernel makes a UUID. The
id is on ``request.state.request_id`` for routes, problem responses included, and in
``kernos.kernel.requests.REQUEST_ID`` for the kernel: a run started by the request takes it as
its correlation id, so every audit record of the run carries it.

A ``traceparent`` (and ``tracestate``) header is honoured: the request runs in that remote
span context, so the kernel's spans for it — and for a process it spawns, whose task inherits
the context — join the caller's trace. A malformed ``traceparent`` is ignored (W3C says to
start a new trace), never an error.
"""

from __future__ import annotations

import logging
import re
import uuid

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernos.kernel.requests import REQUEST_ID

HEADER = "x-request-id"
_TRACE_HEADERS = (b"traceparent", b"tracestate")
_PROPAGATOR = TraceContextTextMapPropagator()
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_RECORDED = 64  # the longest correlation id the process table and the audit log keep

log = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Pure ASGI middleware (no buffering, so streamed responses stay streamed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given: str | None = None
        carrier: dict[str, str] = {}
        for key, value in scope.get("headers", []):
            if key == HEADER.encode():
                given = value.decode("latin-1")
            elif key in _TRACE_HEADERS:
                carrier[key.decode()] = value.decode("latin-1")
        request_id = given if given and _VALID.match(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != HEADER.encode()]
                headers.append((HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        # The id becomes a correlation id (64 characters at most there); a longer one is
        # echoed but not recorded, so it can never make a spawn or an audit record fail.
        token = REQUEST_ID.set(request_id if len(request_id) <= _RECORDED else None)
        attached = otel_context.attach(_PROPAGATOR.extract(carrier)) if carrier else None
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if attached is not None:
                otel_context.detach(attached)
            REQUEST_ID.reset(token)
