"""``/v1/audit``: read, verify and checkpoint the tamper-evident audit log.

Records are scoped to the caller's tenant. Verify and checkpoint cover the whole chain (it
spans every tenant); they need ``admin`` on ``audit:*``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from kernos.api.deps import KernelDep, allowed
from kernos.api.schemas import MAX_ID
from kernos.kernel.errors import ConfigError, Conflict, NotFound
from kernos.kernel.identity import Principal
from kernos.policy.audit import AuditLog
from kernos.policy.audit.checkpoints import parse_witness
from kernos.policy.audit.query import MAX_PAGE

router = APIRouter(prefix="/v1/audit", tags=["audit"])


async def get_audit_log(request: Request, kernel: KernelDep) -> AuditLog:
    """The kernel's audit log (one per app, so checkpoints are made one at a time)."""
    log: AuditLog | None = getattr(request.app.state, "audit_log", None)
    if log is None:
        log = request.app.state.audit_log = AuditLog.for_kernel(kernel)
    return log


AuditLogDep = Annotated[AuditLog, Depends(get_audit_log)]


class AuditPage(BaseModel):
    """Audit records, oldest first; page on with ``after=next_after``."""

    data: list[dict[str, Any]]
    count: int
    next_after: int | None


class VerifyRequest(BaseModel):
    """Witness entries (JSON lines, as exported) to verify the log against."""

    witness: list[str] = Field(default_factory=list, max_length=1_000_000)


@router.get("", response_model=AuditPage, summary="List audit records")
async def list_records(
    principal: Annotated[Principal, allowed("audit:*", "read")],
    audit: AuditLogDep,
    tenant: Annotated[str | None, Query(description="Only your own tenant, for now.")] = None,
    pid: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only this process's records.")
    ] = None,
    event: Annotated[str | None, Query(description="Only this event (syscall.intent, …).")] = None,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_ID,
            description="Records after this seq, oldest first (0: from the start). "
            "Without it: the newest ones.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Most records returned.")] = 100,
    body: Annotated[bool, Query(description="Include each record's hashed body.")] = False,
) -> AuditPage:
    """Audit records of the caller's tenant: the newest ``limit``, or a page after a seq."""
    if tenant is not None and tenant != principal.tenant:
        raise NotFound(f"tenant {tenant!r} does not exist")  # never confirm another tenant
    data = await audit.records(
        tenant=principal.tenant, pid=pid, event=event, after=after, limit=limit, with_body=body
    )
    next_after = data[-1]["seq"] if data else after
    return AuditPage(data=data, count=len(data), next_after=next_after)


@router.get("/verify", summary="Verify the audit log")
async def verify(
    principal: Annotated[Principal, allowed("audit:*", "admin")], audit: AuditLogDep
) -> dict[str, Any]:
    """Recompute every hash and signed root; ``ok`` false names the first bad seq and the
    kind of damage. Damage is a finding, not an error: the answer is 200 either way."""
    return (await audit.verify()).as_dict()


@router.post("/verify", summary="Verify the audit log against a witness")
async def verify_with_witness(
    request_body: VerifyRequest,
    principal: Annotated[Principal, allowed("audit:*", "admin")],
    audit: AuditLogDep,
) -> dict[str, Any]:
    """Like ``GET``, also comparing the log with witness entries (the lines a witness kept)."""
    entries = parse_witness(request_body.witness, source="witness")
    return (await audit.verify(witness=entries)).as_dict()


@router.post("/checkpoints", summary="Sign a checkpoint")
async def checkpoint(
    principal: Annotated[Principal, allowed("audit:*", "admin")],
    audit: AuditLogDep,
    response: Response,
) -> dict[str, Any]:
    """Sign the Merkle root over the records since the last checkpoint and export it to the
    witness: 201 with the new checkpoint, or 200 with the latest one if nothing is new."""
    try:
        result = await audit.checkpoint()
    except ConfigError as exc:
        # The request is fine; this kernel is not set up to sign. Not a server fault (5xx).
        raise Conflict(str(exc), code="audit_signing_not_configured") from exc
    response.status_code = 201 if result.created else 200
    return result.as_dict()


class RevealRequest(BaseModel):
    """``POST /v1/audit/reveal``: the original behind a redaction token."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=4, max_length=120, examples=["[EMAIL:tok_3f9a0c1d2e4b5a697887]"])
    reason: str | None = Field(default=None, max_length=500, description="Why (audited).")


@router.post("/reveal", summary="Reveal a redacted value")
async def reveal(
    body: RevealRequest,
    principal: Annotated[Principal, allowed("audit:*", "admin")],
    kernel: KernelDep,
) -> dict[str, str]:
    """The original a redaction token stands for, in the caller's tenant (404 otherwise).

    Every reveal, refused or not, is itself an audit record (without the original).
    """
    from kernos.policy.service import guard_of

    original = await guard_of(kernel).vault.reveal(
        body.token,
        tenant=principal.tenant,
        principal=principal,
        audit=kernel.audit_sink,
        reason=body.reason,
        rule="audit:* admin",
    )
    return {"token": body.token, "original": original}
