"""``GET /healthz``: is the server up (no authentication, for probes)."""

from __future__ import annotations

from fastapi import APIRouter

from kernos.api.deps import KernelDep
from kernos.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness probe")
async def healthz(kernel: KernelDep) -> Health:
    """``ok`` while the server answers; no token needed."""
    return Health(version=kernel.version)
