"""``GET /healthz`` (is the server up) and ``GET /readyz`` (can it serve): no token, for probes."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from kernos.api.deps import KernelDep
from kernos.api.schemas import Health
from kernos.kernel.errors import KernelUnavailable

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
    """``ready`` when the kernel runs, its database answers a read and its syscall pipeline
    (policy included) is built;
    otherwise a 503 problem naming what failed (no token needed)."""
    checks: dict[str, str] = {}
    checks["kernel"] = "ok" if kernel.running else "not running"
    try:
        async with kernel.db.read() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure to read is "not ready", reported, never raised
        checks["database"] = f"failed: {type(exc).__name__}"
    checks["pipeline"] = "ok" if kernel.pipeline.names else "not built"
    failed = {name: state for name, state in checks.items() if state != "ok"}
    if failed:
        raise KernelUnavailable(
            "not ready: " + ", ".join(f"{name} {state}" for name, state in failed.items())
        )
    return Readiness(status="ready", checks=checks)
