"""``/v1/policy``: check, list and change the caller's tenant's policy lines and approval
rules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from kernos.api.deps import KernelDep, allowed
from kernos.kernel.identity import Principal
from kernos.policy.approval_rules import ApprovalRule
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


class ApprovalRuleLine(BaseModel):
    """An approval rule to add or remove, as one line."""

    model_config = ConfigDict(extra="forbid")

    line: str = Field(
        min_length=3,
        max_length=1000,
        examples=["a, city, tool:dispatch_trucks, call, hazard == true, inspector, 15m, admin"],
    )


class ApprovalRulePublic(BaseModel):
    """An approval rule: calls it matches wait for a human of ``role``."""

    line: str
    tenant: str
    object: str
    action: str
    condition: str
    role: str
    deadline_seconds: float | None
    escalation: list[str]


class ApprovalRules(BaseModel):
    """Approval rules in the order they are tried."""

    data: list[ApprovalRulePublic]
    count: int


def _public(rule: ApprovalRule) -> ApprovalRulePublic:
    return ApprovalRulePublic.model_validate(rule.as_dict())


@router.get("/approval-rules", response_model=ApprovalRules, summary="List approval rules")
async def list_approval_rules(
    principal: Annotated[Principal, allowed("policy:*", "read")], kernel: KernelDep
) -> ApprovalRules:
    """The approval rules of the caller's tenant and those for every tenant (``*``)."""
    rules = await policy_services(kernel).list_approval_rules(principal)
    return ApprovalRules(data=[_public(r) for r in rules], count=len(rules))


@router.post(
    "/approval-rules",
    response_model=ApprovalRulePublic,
    status_code=status.HTTP_201_CREATED,
    summary="Add an approval rule",
)
async def add_approval_rule(
    body: ApprovalRuleLine,
    principal: Annotated[Principal, allowed("policy:*", "admin")],
    kernel: KernelDep,
) -> ApprovalRulePublic:
    """Add a rule (tried after the others); it applies at once. 400 (and no change) if it
    does not parse or names an unknown role, 409 if it is there already."""
    rule = await policy_services(kernel).change_approval_rule(principal, body.line, add=True)
    return _public(rule)


@router.post(
    "/approval-rules/remove",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an approval rule",
)
async def remove_approval_rule(
    body: ApprovalRuleLine,
    principal: Annotated[Principal, allowed("policy:*", "admin")],
    kernel: KernelDep,
) -> None:
    """Remove a rule; 404 if the caller's tenant has no such rule."""
    await policy_services(kernel).change_approval_rule(principal, body.line, add=False)
