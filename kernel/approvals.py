"""Approvals: questions processes ask humans, their answers, deadlines and escalation.

The approval stage of the pipeline creates an approval (``approvals`` row, keyed by syscall
key) and interrupts the process; ``Approvals`` lists them, records answers and hands them to
the process manager to resume the process.

Deadlines run on the kernel clock. Past its deadline a pending approval moves to the next role
of its escalation chain — ``required_role`` changes, ``level`` goes up by one, and it gets a new
deadline the same step away — audited and published as ``approval.escalated``. When the chain
is used up it expires: the process resumes with a denial (``ApprovalDenied``), audited and
published as ``approval.expired``. Nothing polls: a timer task sleeps on the kernel clock until
the earliest deadline, and is woken when a process starts waiting on an approval with an
earlier one. Deadlines are in the database, so ``start`` re-arms the timer after a restart
(approvals whose deadline passed while the kernel was down are handled at once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernos.kernel.errors import Conflict, KernosError, NotFound
from kernos.kernel.identity import Principal
from kernos.kernel.storage.models import ApprovalRow, ProcessRow, TenantRow
from kernos.kernel.syscalls import AuditRecord

if TYPE_CHECKING:
    from kernos.kernel.kernel import Kernel

log = logging.getLogger(__name__)

DEFAULT_APPROVER = "operator"
"""The role an approval requires when it names none (``approval:operator`` in the policy)."""

KERNEL_PRINCIPAL = "kernel"
"""The principal audit records and events name when the kernel itself escalates or expires."""

RETRY_SECONDS = 30.0
"""How long (kernel clock) the timer waits before trying again when the database failed."""

# ProcessState's terminal values (kernos.kernel.processes imports this module): approvals of
# finished processes never escalate.
_FINISHED = ("done", "failed", "killed")


def format_duration(seconds: float) -> str:
    """``900`` as ``15m``, ``5400`` as ``1h30m``, ``1.5`` as ``1.5s`` (days, hours, minutes,
    seconds; the form approval rules are written in)."""
    if seconds <= 0:
        return "0s"
    whole = int(seconds)
    fraction = seconds - whole
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    if whole or fraction or not parts:
        rest = whole + fraction
        parts.append(f"{rest:g}s")
    return "".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalInfo:
    """A pending or decided question to a human."""

    id: str
    pid: int
    tenant: str
    kind: str
    question: str
    proposed: Any
    required_role: str | None
    status: str
    """``pending``, ``approved``, ``denied`` or ``expired``."""
    answer: Any
    decided_by: str | None
    comment: str | None
    created_at: datetime
    decided_at: datetime | None
    deadline: datetime | None = None
    """When the current role's time to answer ends (``None``: never)."""
    level: int = 0
    """How many times it escalated."""
    escalation: tuple[str, ...] = ()
    """The whole escalation chain (roles after the first), in order."""
    rule: str | None = None
    """The approval rule that required it, if one did."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "pid": self.pid,
            "tenant": self.tenant,
            "kind": self.kind,
            "question": self.question,
            "proposed": self.proposed,
            "required_role": self.required_role,
            "status": self.status,
            "answer": self.answer,
            "decided_by": self.decided_by,
            "comment": self.comment,
            "created_at": self.created_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "level": self.level,
            "escalation": list(self.escalation),
            "rule": self.rule,
        }


def approval_info(row: ApprovalRow, tenant: str) -> ApprovalInfo:
    """An approval row as ``ApprovalInfo``."""
    return ApprovalInfo(
        id=row.id,
        pid=row.pid,
        tenant=tenant,
        kind=row.kind,
        question=row.question,
        proposed=row.proposed,
        required_role=row.required_role,
        status=row.status,
        answer=row.answer,
        decided_by=row.decided_by,
        comment=row.comment,
        created_at=row.created_at,
        decided_at=row.decided_at,
        deadline=row.deadline,
        level=row.level or 0,
        escalation=tuple((row.escalation or ())[1:]),
        rule=row.rule,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessApprovals:
    """A process's approvals as its runner needs them when a run starts."""

    answers: dict[str, Any]
    """Answers not yet delivered, by LangGraph interrupt id."""
    asked: frozenset[str]
    """Syscall keys that asked (they interrupt again when re-run)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Moved:
    """One approval the timer escalated or expired (for the event published after commit)."""

    topic: str
    event_id: str
    tenant: str
    pid: int
    correlation_id: str | None
    data: dict[str, Any]


Resume = Callable[[int], Awaitable[None]]
"""``resume(pid)``: go on with a process waiting for an answer that is now there."""


class Approvals:
    """Approvals of one kernel: listing, answering, and escalation on the kernel clock."""

    def __init__(self, kernel: Kernel, *, resume: Resume) -> None:
        """``resume`` is called with the pid of a process whose approval was answered or
        expired (the process manager restarts it unless it is suspended or running)."""
        self._kernel = kernel
        self._db = kernel.db
        self._clock = kernel.clock
        self._resume = resume
        self._timers: dict[asyncio.Task[None], datetime | None] = {}
        self._closing = False

    # -- Listing and answering ------------------------------------------------------------

    async def list_approvals(
        self, *, tenant: str | None = None, status: str | None = "pending"
    ) -> list[ApprovalInfo]:
        """Approvals, oldest first, of one tenant and status (``None``: any status)."""
        query = select(ApprovalRow, TenantRow.name).join(
            TenantRow, TenantRow.id == ApprovalRow.tenant_id
        )
        if tenant is not None:
            query = query.where(TenantRow.name == tenant)
        if status is not None:
            query = query.where(ApprovalRow.status == status)
        async with self._db.read() as session:
            rows = (await session.execute(query.order_by(ApprovalRow.created_at))).all()
        return [approval_info(row, name) for row, name in rows]

    async def decide(
        self,
        approval_id: str,
        *,
        approved: bool,
        by: Principal,
        value: Any = None,
        comment: str | None = None,
    ) -> ApprovalInfo:
        """Answer an approval and resume its process (unless it is suspended).

        The policy decides who may answer: ``approve`` on ``approval:ROLE``, ROLE being the
        role the approval requires now (``operator`` when it names none). Raises ``NotFound``
        (unknown, or another tenant's), ``PolicyDenied`` and ``Conflict`` (already decided or
        expired, or escalated to another role while the answer was on its way).
        """
        required = await self._required_role(approval_id, tenant=by.tenant)
        await self._kernel.authorize(by, f"approval:{required or DEFAULT_APPROVER}", "approve")
        now = self._clock.now()
        audit = self._kernel.audit_sink

        def job(session: Session) -> ApprovalInfo:
            found = session.execute(
                select(ApprovalRow, TenantRow.name)
                .join(TenantRow, TenantRow.id == ApprovalRow.tenant_id)
                .where(ApprovalRow.id == approval_id)
            ).first()
            if found is None or found[1] != by.tenant:
                raise NotFound(f"no approval {approval_id!r} in tenant {by.tenant!r}")
            row, tenant = found
            if row.status != "pending":
                raise Conflict(f"approval {approval_id} was already {row.status}")
            if row.required_role != required:
                raise Conflict(
                    f"approval {approval_id} escalated to {row.required_role} meanwhile; "
                    "only that role may answer it now"
                )
            row.status = "approved" if approved else "denied"
            row.answer = {
                "approved": approved,
                "value": value,
                "comment": comment,
                "by": by.subject,
            }
            row.decided_by = by.subject
            row.comment = comment
            row.decided_at = now
            audit.append(
                session,
                AuditRecord(
                    event="approval.decided",
                    tenant=tenant,
                    principal=by.subject,
                    pid=row.pid,
                    syscall_key=row.syscall_key,
                    decision="approve" if approved else "deny",
                    summary=comment,
                ),
            )
            return approval_info(row, tenant)

        info = await self._db.write(job)
        await self._resume(info.pid)
        return info

    async def _required_role(self, approval_id: str, *, tenant: str) -> str | None:
        async with self._db.read() as session:
            found = (
                await session.execute(
                    select(ApprovalRow.required_role, TenantRow.name)
                    .join(TenantRow, TenantRow.id == ApprovalRow.tenant_id)
                    .where(ApprovalRow.id == approval_id)
                )
            ).first()
        if found is None or found[1] != tenant:
            raise NotFound(f"no approval {approval_id!r} in tenant {tenant!r}")
        return found[0]

    # -- What the process runner needs ----------------------------------------------------

    async def for_process(self, pid: int) -> ProcessApprovals:
        """Undelivered answers and the keys of every syscall that asked, of one process."""
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(
                        ApprovalRow.syscall_key,
                        ApprovalRow.status,
                        ApprovalRow.interrupt_id,
                        ApprovalRow.delivered_at,
                        ApprovalRow.answer,
                    ).where(ApprovalRow.pid == pid)
                )
            ).all()
        answers = {
            interrupt_id: answer
            for _, status, interrupt_id, delivered_at, answer in rows
            if status != "pending" and delivered_at is None and interrupt_id
        }
        return ProcessApprovals(answers=answers, asked=frozenset(row[0] for row in rows))

    async def undelivered_answers(self, pid: int) -> dict[str, Any]:
        """Answers to the process's interrupts not yet delivered, by interrupt id."""
        return (await self.for_process(pid)).answers

    async def record_interrupts(self, pid: int, interrupts: Iterable[Any]) -> None:
        """Note which LangGraph interrupt each approval is (the answer resumes that one), and
        wake the timer for the earliest deadline among them."""
        ids = {
            str(i.value.get("approval_id")): i.id
            for i in interrupts
            if isinstance(i.value, dict) and i.value.get("approval_id")
        }

        def job(session: Session) -> datetime | None:
            earliest: datetime | None = None
            for approval_id, interrupt_id in ids.items():
                row = session.get(ApprovalRow, approval_id)
                if row is not None and row.pid == pid:
                    row.interrupt_id = interrupt_id
                    if row.status == "pending" and row.deadline is not None:
                        earliest = min(earliest or row.deadline, row.deadline)
            return earliest

        if ids:
            self.wake(await self._db.write(job))

    async def mark_delivered(self, pid: int, interrupt_ids: list[str]) -> None:
        """Record that these answers reached the process."""
        now = self._clock.now()

        def job(session: Session) -> None:
            rows = session.scalars(
                select(ApprovalRow).where(
                    ApprovalRow.pid == pid, ApprovalRow.interrupt_id.in_(interrupt_ids)
                )
            )
            for row in rows:
                row.delivered_at = now

        await self._db.write(job)

    # -- Deadlines ------------------------------------------------------------------------

    async def start(self) -> None:
        """Arm the timer for the earliest pending deadline in the database (after a restart,
        one that passed while the kernel was down is handled at once)."""
        self._closing = False
        async with self._db.read() as session:
            earliest = await session.scalar(_next_deadline_query())
        self.wake(earliest)

    async def stop(self) -> None:
        """Stop the timers; deadlines stay in the database for the next start."""
        self._closing = True
        tasks = list(self._timers)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._timers.clear()

    def wake(self, when: datetime | None) -> None:
        """Make sure a timer fires at ``when`` (a new deadline), unless one fires by then."""
        if when is None or self._closing:
            return
        if any(at is not None and at <= when for at in self._timers.values()):
            return
        task = asyncio.create_task(self._timer(when), name="kernos-approval-deadlines")
        self._timers[task] = when
        task.add_done_callback(self._timer_done)

    def _timer_done(self, task: asyncio.Task[None]) -> None:
        self._timers.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("approval deadline timer stopped: %s", task.exception())

    async def _timer(self, when: datetime) -> None:
        task = asyncio.current_task()
        assert task is not None
        at: datetime | None = when
        while at is not None:
            await self._clock.sleep_until(at)
            self._timers[task] = None  # firing: a new deadline needs a timer of its own
            try:
                at = await self._fire()
            except Exception:  # storage trouble: the deadlines stay in the database
                log.exception("approval deadlines not processed; trying again")
                at = self._clock.now() + timedelta(seconds=RETRY_SECONDS)
            if at is None or any(
                other is not task and t is not None and t <= at for other, t in self._timers.items()
            ):
                return
            self._timers[task] = at

    async def _fire(self) -> datetime | None:
        """Escalate or expire every approval past its deadline; returns the next deadline."""
        now = self._clock.now()
        audit = self._kernel.audit_sink

        def job(session: Session) -> tuple[list[_Moved], datetime | None]:
            due = session.execute(
                select(ApprovalRow, TenantRow.name, ProcessRow.correlation_id)
                .join(TenantRow, TenantRow.id == ApprovalRow.tenant_id)
                .join(ProcessRow, ProcessRow.pid == ApprovalRow.pid)
                .where(
                    ApprovalRow.status == "pending",
                    ApprovalRow.deadline.is_not(None),
                    ApprovalRow.deadline <= now,
                    ProcessRow.state.not_in(_FINISHED),
                )
                .order_by(ApprovalRow.deadline)
            ).all()
            moved = [
                _move(session, row, tenant, cid, now, audit.append) for row, tenant, cid in due
            ]
            session.flush()
            return moved, session.scalar(_next_deadline_query())

        moved, following = await self._db.write(job)
        for item in moved:
            await self._publish(item)
            if item.topic == "approval.expired":
                await self._resume(item.pid)
        return following

    async def _publish(self, item: _Moved) -> None:
        from kernos.kernel.events import Event

        try:
            await self._kernel.events.publish(
                Event(
                    id=item.event_id,
                    topic=item.topic,
                    tenant=item.tenant,
                    source=KERNEL_PRINCIPAL,
                    data=item.data,
                    correlation_id=item.correlation_id,
                )
            )
        except KernosError as exc:
            log.warning("could not publish %s: %s", item.topic, exc, extra={"pid": item.pid})


def _next_deadline_query() -> Any:
    return (
        select(ApprovalRow.deadline)
        .join(ProcessRow, ProcessRow.pid == ApprovalRow.pid)
        .where(
            ApprovalRow.status == "pending",
            ApprovalRow.deadline.is_not(None),
            ProcessRow.state.not_in(_FINISHED),
        )
        .order_by(ApprovalRow.deadline)
        .limit(1)
    )


def _move(
    session: Session,
    row: ApprovalRow,
    tenant: str,
    correlation_id: str | None,
    now: datetime,
    append: Callable[[Session, AuditRecord], None],
) -> _Moved:
    """Escalate ``row`` to the next role of its chain, or expire it (within ``session``)."""
    level = row.level or 0
    previous = row.required_role or DEFAULT_APPROVER
    route = list(row.escalation or ()) or [previous]
    data: dict[str, Any] = {
        "approval_id": row.id,
        "pid": row.pid,
        "kind": row.kind,
        "question": row.question,
        "rule": row.rule,
    }
    if level + 1 < len(route):
        role = route[level + 1]
        row.required_role = role
        row.level = level + 1
        row.deadline = now + timedelta(seconds=row.step_seconds) if row.step_seconds else None
        until = row.deadline.isoformat() if row.deadline else "no deadline"
        summary = f"{previous} did not answer; now {role} (level {row.level}, until {until})"
        topic, event = "approval.escalated", f"{row.id}.escalated.{row.level}"
        data |= {
            "from_role": previous,
            "role": role,
            "level": row.level,
            "deadline": row.deadline.isoformat() if row.deadline else None,
        }
    else:
        waited = format_duration((now - row.created_at).total_seconds())
        asked = ", then ".join(route[: level + 1])
        summary = f"expired after {waited} without an answer from {asked}"
        row.status = "expired"
        row.answer = {"approved": False, "expired": True, "comment": summary, "by": None}
        row.decided_by = KERNEL_PRINCIPAL
        row.comment = summary
        row.decided_at = now
        topic, event = "approval.expired", f"{row.id}.expired"
        data |= {"role": previous, "level": level, "comment": summary}
    append(
        session,
        AuditRecord(
            event=topic,
            tenant=tenant,
            principal=KERNEL_PRINCIPAL,
            pid=row.pid,
            syscall_key=row.syscall_key,
            kind=row.kind,
            rule=row.rule,
            summary=summary,
            correlation_id=correlation_id,
        ),
    )
    return _Moved(
        topic=topic,
        event_id=event,
        tenant=tenant,
        pid=row.pid,
        correlation_id=correlation_id,
        data=data,
    )
