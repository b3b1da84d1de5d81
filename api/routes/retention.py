"""``/v1/retention``: the retention policy in force, and a purge pass on demand.

Reading the policy needs ``read`` on ``retention:*``; a purge needs ``admin`` on it. A purge
asked from the default tenant (the kernel operator's) covers every tenant and archives the
audit log; asked from any other tenant, it covers that tenant only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from kernos.api.deps import KernelDep, allowed
from kernos.kernel.identity import DEFAULT_TENANT, Principal

router = APIRouter(prefix="/v1/retention", tags=["retention"])


class PurgeRequest(BaseModel):
    """How to run the pass."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=False, description="Only count what would be deleted.")


@router.get("", summary="Show the retention policy")
async def show_policy(
    principal: Annotated[Principal, allowed("retention:*", "read")], kernel: KernelDep
) -> dict[str, Any]:
    """The kernel-wide policy, the rules in force for the caller's tenant, and the last
    pass's report (``null`` before the first)."""
    purger = kernel.retention
    last = purger.last_report
    return {
        "policy": purger.policy.model_dump(mode="json"),
        "tenant": principal.tenant,
        "effective": purger.policy.for_tenant(principal.tenant).model_dump(mode="json"),
        "configured": purger.policy.configured,
        "last_report": None if last is None else last.as_dict(),
    }


@router.post("/purge", summary="Run a retention pass now")
async def purge(
    principal: Annotated[Principal, allowed("retention:*", "admin")],
    kernel: KernelDep,
    body: PurgeRequest | None = None,
) -> dict[str, Any]:
    """Purge what the policy says is due now (every tenant from the default tenant, else the
    caller's own), audited; returns counts per tenant, kind and table."""
    tenants = None if principal.tenant == DEFAULT_TENANT else [principal.tenant]
    report = await kernel.retention.run_once(
        tenants=tenants, dry_run=body is not None and body.dry_run, by=principal
    )
    return report.as_dict()
