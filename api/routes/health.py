"""``GET /healthz`` (is the server up) and ``GET /readyz`` (can it serve): no token, for probes."""

from __future__ import annotations

import asyncio
import time
from weakref import WeakKeyDictionary

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from kernos.api.deps import KernelDep
from kernos.api.schemas import Health
from kernos.kernel.errors import KernelUnavailable
from kernos.kernel.kernel import Kernel
from kernos.kernel.llm import LLMBackend

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness probe")
async def healthz(kernel: KernelDep) -> Health:
    """``ok`` while the server answers; no token needed."""
    return Health(version=kernel.version)


class Readiness(BaseModel):
    """What ``/readyz`` checked."""

    status: str
    checks: dict[str, str]


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness probe",
    responses={503: {"description": "Not ready: a problem naming the failed checks."}},
)
async def readyz(kernel: KernelDep) -> Readiness:
    """``ready`` when the kernel runs, its database answers a read, its syscall pipeline
    (policy included) is built and, when LLM backends are configured, at least one of them is
    healthy (each is listed as ``llm:NAME``); otherwise a 503 problem naming what failed (no
    token needed)."""
    checks: dict[str, str] = {}
    checks["kernel"] = "ok" if kernel.running else "not running"
    try:
        async with kernel.db.read() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure to read is "not ready", reported, never raised
        checks["database"] = f"failed: {type(exc).__name__}"
    checks["pipeline"] = "ok" if kernel.pipeline.names else "not built"
    llm = await _backend_checks(kernel)
    checks.update(llm)
    failed = {name: state for name, state in checks.items() if state != "ok" and name not in llm}
    if llm and all(state != "ok" for state in llm.values()):
        failed.update(llm)  # ready while any backend answers: the others may fall back to it
    if failed:
        raise KernelUnavailable(
            "not ready: " + ", ".join(f"{name} {state}" for name, state in failed.items())
        )
    return Readiness(status="ready", checks=checks)


BACKEND_CHECK_SECONDS = 2.0
"""How long ``/readyz`` waits for each LLM backend's health check."""


BACKEND_CHECK_TTL = 5.0
"""Seconds a backend check result is reused: ``/readyz`` needs no token, so without this any
caller could multiply the load on every LLM server by polling it."""

_checked: WeakKeyDictionary[Kernel, tuple[float, dict[str, str]]] = WeakKeyDictionary()


async def _backend_checks(kernel: Kernel) -> dict[str, str]:
    """``llm:NAME`` → ``ok`` or why not, checked concurrently (empty without backends), at
    most once per ``BACKEND_CHECK_TTL`` seconds."""
    scheduler = kernel.scheduler
    if scheduler is None:
        return {}
    now = time.monotonic()
    cached = _checked.get(kernel)
    if cached is not None and now - cached[0] < BACKEND_CHECK_TTL:
        return dict(cached[1])
    backends = scheduler.backends

    async def check(backend: LLMBackend) -> str:
        try:
            await asyncio.wait_for(backend.health(), BACKEND_CHECK_SECONDS)
        except TimeoutError:
            return f"failed: no answer within {BACKEND_CHECK_SECONDS:g} s"
        except Exception as exc:  # reported, never raised
            return f"failed: {type(exc).__name__}"
        return "ok"

    states = await asyncio.gather(*(check(b) for b in backends.values()))
    found = {f"llm:{name}": state for name, state in zip(backends, states, strict=True)}
    _checked[kernel] = (now, found)
    return dict(found)
