"""``GET /v1/whoami``: who the bearer token stands for, and what this kernel offers them."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from kernos.api.deps import CurrentPrincipal, KernelDep
from kernos.kernel.errors import NotFound

router = APIRouter(prefix="/v1", tags=["identity"])


class WhoAmI(BaseModel):
    """The caller and the kernel it reached."""

    principal: str
    """``tenant/name``: what audit records name as the actor."""
    tenant: str
    name: str
    kind: str
    """``person``, ``service`` or ``agent``."""
    roles: list[str]
    """The roles the policy gives this principal in its tenant (``admin``, ``operator``...)."""
    version: str
    """The kernel's version."""
    llm: bool
    """Whether agents here get a working chat model (the console's operator agent needs one)."""
    operator_agent: bool
    """Whether the ``operator`` agent is installed."""


@router.get("/whoami", response_model=WhoAmI, summary="Who am I")
async def whoami(principal: CurrentPrincipal, kernel: KernelDep) -> WhoAmI:
    """The principal of the token (any valid token may ask: it says nothing about others)."""
    return WhoAmI(
        principal=principal.subject,
        tenant=principal.tenant,
        name=principal.name,
        kind=principal.kind.value,
        roles=await _roles(kernel, principal.tenant, principal.name),
        version=kernel.version,
        llm=kernel.llm_available,
        operator_agent="operator" in kernel.catalog.agents,
    )


async def _roles(kernel: object, tenant: str, name: str) -> list[str]:
    from kernos.policy.service import policy_services

    try:
        services = policy_services(kernel)  # type: ignore[arg-type]
    except NotFound:
        return []
    lines = await services.engine.list(tenant)
    found = {
        line.fields[1].removeprefix("role:")
        for line in lines
        if line.ptype == "g" and line.subject == name and line.fields[2] == tenant
    }
    return sorted(found)
