"""``create_app(kernel)``: the FastAPI application for one kernel. Wiring only."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from kernos.api.openapi import install_openapi
from kernos.api.problems import install_problem_handlers
from kernos.api.ratelimit import TenantRateLimiter
from kernos.api.request_id import RequestIdMiddleware
from kernos.api.routes import (
    approvals,
    audit,
    catalog,
    event_log,
    events,
    health,
    keys,
    memory,
    metrics,
    models,
    openai,
    policy,
    processes,
    retention,
    runs,
    streams,
    webhooks,
    whoami,
)
from kernos.kernel.kernel import Kernel
from kernos.kernel.tokens import Authenticator, ensure_admin_token


def create_app(kernel: Kernel, *, authenticators: Sequence[Authenticator] | None = None) -> FastAPI:
    """The API of ``kernel``.

    ``authenticators`` are tried in order on each bearer token; by default the local admin
    token of the kernel's home (created if missing).
    """
    app = FastAPI(
        title="Kernos",
        version=kernel.version,
        summary="Control API of a Kernos kernel: runs, processes, approvals.",
    )
    app.state.kernel = kernel
    app.state.authenticators = list(
        authenticators if authenticators is not None else [ensure_admin_token(kernel.settings.home)]
    )
    app.state.event_limiter = TenantRateLimiter(
        kernel.clock,
        rate=kernel.settings.event_ingest_rate,
        burst=kernel.settings.event_ingest_burst,
    )
    app.add_middleware(RequestIdMiddleware)
    install_problem_handlers(app)
    install_openapi(app)
    # The hottest routes first: Starlette tries routes in order.
    app.include_router(health.router)
    app.include_router(processes.router)
    app.include_router(events.router)
    app.include_router(event_log.router)
    app.include_router(metrics.router)
    app.include_router(runs.router)
    app.include_router(catalog.router)
    app.include_router(openai.router)
    app.include_router(streams.router)
    app.include_router(approvals.router)
    app.include_router(keys.router)
    app.include_router(policy.router)
    app.include_router(audit.router)
    app.include_router(models.router)
    app.include_router(memory.router)
    app.include_router(webhooks.router)
    app.include_router(retention.router)
    app.include_router(whoami.router)
    return app


__all__ = ["create_app"]
