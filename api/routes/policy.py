"""``/v1/policy``: check, list and change the caller's tenant's policy lines."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from kernos.api.deps import KernelDep, allowed
from kernos.kernel.identity import Principal
from kernos.policy.service import policy_services

router = APIRouter(prefix="/v1/policy", tags=["policy"])


class PolicyLine(BaseModel):
    """A policy line to add or remove, e.g. ``g, alice, role:operator, city``."""

    model_config = ConfigDict(extra="forbid")

    line: str = Field(min_length=3, max_length=500, examples=["g, alice, role:operator, city"])


class PolicyLines(BaseModel):
    """Policy lines in force for the caller's tenant."""

    data: list[str]
    count: int


class DecisionPublic(BaseModel):
    """A policy decision and the rule that made it."""

    allowed: bool
    rule: str


@router.get("/check", response_model=DecisionPublic, summary="Check a request")
async def check(
    principal: Annotated[Principal, allowed("policy:*", "read")],
    kernel: KernelDep,
    subject: Annotated[str, Query(min_length=1, max_length=127)],
    tenant: Annotated[str, Query(min_length=1, max_length=63)],
    obj: Annotated[str, Query(alias="object", min_length=1, max_length=200)],
    action: Annotated[str, Query(min_length=1, max_length=16)],
) -> DecisionPublic:
    """Would the policy let ``subject`` do ``action`` on ``object`` in ``tenant``?"""
    decision = await policy_services(kernel).check(
        principal, subject=subject, tenant=tenant, obj=obj, action=action
    )
    return DecisionPublic(allowed=decision.allowed, rule=decision.rule)


@router.get("", response_model=PolicyLines, summary="List policy lines")
async def list_lines(
    principal: Annotated[Principal, allowed("policy:*", "read")], kernel: KernelDep
) -> PolicyLines:
    """The lines of the caller's tenant and those for every tenant (``*``)."""
    lines = await policy_services(kernel).lines(principal)
    return PolicyLines(data=lines, count=len(lines))


@router.post("", status_code=status.HTTP_204_NO_CONTENT, summary="Add a policy line")
async def add_line(
    body: PolicyLine,
    principal: Annotated[Principal, allowed("policy:*", "admin")],
    kernel: KernelDep,
) -> None:
    """Add a line; it applies at once. 400 (and no change) if it does not parse."""
    await policy_services(kernel).change(principal, body.line, add=True)


@router.post("/remove", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a policy line")
async def remove_line(
    body: PolicyLine,
    principal: Annotated[Principal, allowed("policy:*", "admin")],
    kernel: KernelDep,
) -> None:
    """Remove a line; 404 if there is no such line in the caller's tenant."""
    await policy_services(kernel).change(principal, body.line, add=False)
