"""The request a piece of kernel work was started by, when a front end (the API) knows it.

The API sets ``REQUEST_ID`` from ``X-Request-ID`` for the duration of a request; asyncio
tasks started meanwhile (a spawned process's runner) inherit it. A top-level process spawned
by a request takes the request id as its correlation id, so the request id is on every audit
record of that run and a caller can find the run from the id it sent.
"""

from __future__ import annotations

from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("kernos_request_id", default=None)
"""The current request's id (``X-Request-ID``), or ``None`` outside a request."""
