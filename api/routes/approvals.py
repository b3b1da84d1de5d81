"""``/v1/approvals``: questions processes asked a human, and their answers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kernos.api.deps import CurrentPrincipal, ProcessesDep, allowed
from kernos.api.schemas import ApprovalList, ApprovalPublic, ApprovalStatus, DecisionRequest
from kernos.kernel.identity import Principal

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


@router.get("", response_model=ApprovalList, summary="List approvals")
async def list_approvals(
    principal: Annotated[Principal, allowed("approval:*", "read")],
    processes: ProcessesDep,
    status: Annotated[ApprovalStatus, Query(description="Which approvals; 'all' for any.")] = (
        "pending"
    ),
) -> ApprovalList:
    """The caller's tenant's approvals, oldest first."""
    found = await processes.approvals(
        tenant=principal.tenant, status=None if status == "all" else status
    )
    return ApprovalList(
        data=[ApprovalPublic.model_validate(a.as_dict()) for a in found], count=len(found)
    )


@router.post("/{approval_id}", response_model=ApprovalPublic, summary="Answer an approval")
async def decide_approval(
    approval_id: str, body: DecisionRequest, principal: CurrentPrincipal, processes: ProcessesDep
) -> ApprovalPublic:
    """Approve or deny; the process resumes with the answer (unless it is suspended).

    404 if the approval is unknown or another tenant's, 409 if it was already decided.
    """
    info = await processes.decide(
        approval_id,
        approved=body.approved,
        by=principal,
        value=body.value,
        comment=body.comment,
    )
    return ApprovalPublic.model_validate(info.as_dict())
