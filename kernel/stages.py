"""The built-in stages of the syscall pipeline and their default collaborators.

Until the policy layer plugs in Casbin and the hash-chained audit log, the kernel runs with
``LocalAdminAuthorizer`` (only the local admin principal may act; there is no allow-all mode)
and ``PlainAuditSink`` (an append-only table without hashes). Both sit behind their final
interfaces (``Authorizer``, ``AuditSink``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from kernos.kernel import telemetry as names
from kernos.kernel.clock import Clock
from kernos.kernel.errors import (
    ApprovalDenied,
    BudgetExceeded,
    Conflict,
    KernosError,
    PolicyDenied,
)
from kernos.kernel.identity import DEFAULT_TENANT, LOCAL_ADMIN
from kernos.kernel.journal import JournalIndex, UsageBook, charge, statements
from kernos.kernel.requests import REQUEST_ID
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import (
    ApprovalRow,
    AuditRow,
    SyscallRow,
    TenantRow,
)
from kernos.kernel.syscalls import (
    LLM_ACCOUNTED,
    LLM_MAX_TOKENS,
    LLM_TOKEN_ALLOWANCE,
    AuditRecord,
    AuditSink,
    Authorizer,
    AuthRequest,
    Decision,
    Proceed,
    Stage,
    Syscall,
    SyscallKind,
    SyscallResult,
    Usage,
)
from kernos.kernel.telemetry import Telemetry

log = logging.getLogger(__name__)


# -- Default collaborators ----------------------------------------------------------------


class LocalAdminAuthorizer(Authorizer):
    """Allows the local admin principal of the default tenant and nobody else."""

    async def authorize(self, request: AuthRequest) -> Decision:
        principal = request.principal
        if principal.tenant == DEFAULT_TENANT and principal.name == LOCAL_ADMIN:
            return Decision(allowed=True, rule="local-admin")
        return Decision(
            allowed=False,
            rule="deny-by-default: only the local admin may act until a policy is installed",
        )


class PlainAuditSink(AuditSink):
    """Appends audit records to the ``audit_log`` table (no hash chain)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def append(self, session: Session, record: AuditRecord) -> None:
        # A prebuilt Core insert: the ORM's unit of work costs more than the row here.
        session.execute(
            _AUDIT_INSERT,
            {
                "ts": self._clock.now(),
                "tenant": record.tenant,
                "principal": record.principal,
                "pid": record.pid,
                "syscall_key": record.syscall_key,
                "event": record.event,
                "kind": record.kind,
                "target": record.target,
                "decision": record.decision,
                "rule": record.rule,
                "args": record.args,
                "summary": record.summary,
                "trace_id": record.trace_id,
                # An operator's action with no process to correlate with: the request's id.
                "correlation_id": record.correlation_id or REQUEST_ID.get(),
            },
        )


_AUDIT_INSERT = cast(Table, AuditRow.__table__).insert()


@dataclass(slots=True, kw_only=True)
class StageServices:
    """What the built-in stages need from the kernel."""

    db: Database
    clock: Clock
    telemetry: Telemetry
    audit: AuditSink
    usage: UsageBook
    authorizer: Authorizer
    journal: JournalIndex = field(default_factory=JournalIndex)
    announce: Callable[[str, str, str, dict[str, Any]], Awaitable[None]] | None = None
    """Publishes a kernel event ``(topic, event id, tenant, data)`` after a commit: the
    approval stage announces ``approval.requested`` (human-in-the-loop notifications)."""


def _trace_id(span: Any) -> str | None:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.trace_id else None


def _summary(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _record(call: Syscall, event: str, **fields: Any) -> AuditRecord:
    return AuditRecord(
        event=event,
        tenant=call.process.tenant,
        principal=call.process.owner.subject,
        pid=call.process.pid,
        syscall_key=call.key,
        kind=call.kind.value,
        target=call.target,
        trace_id=call.trace_id,
        correlation_id=call.process.correlation_id,
        **fields,
    )


# -- Stages -------------------------------------------------------------------------------


_SYSCALL_SPANS: dict[SyscallKind, str] = {}


class TraceStage(Stage):
    """Opens the syscall span first, so everything after it carries the trace id."""

    name = "trace"

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._duration = telemetry.instrument(names.SYSCALL_DURATION)
        self._count = telemetry.instrument(names.SYSCALLS)

    async def handle(self, call: Syscall, proceed: Proceed) -> SyscallResult:
        span_name = _SYSCALL_SPANS.get(call.kind)
        if span_name is None:
            span_name = _SYSCALL_SPANS[call.kind] = names.span_name(
                names.SPAN_SYSCALL, **{names.ATTR_SYSCALL_KIND: call.kind}
            )
        started = time.perf_counter()
        outcome = "ok"
        # Attributes given at the start: one call instead of one (locked) set per attribute.
        attributes = {
            names.ATTR_SYSCALL_KIND: call.kind.value,
            names.ATTR_PID: call.process.pid,
            names.ATTR_TENANT: call.process.tenant,
            names.ATTR_AGENT: call.process.agent,
        }
        with self._telemetry.tracer.start_as_current_span(span_name, attributes=attributes) as span:
            call.trace_id = _trace_id(span)
            try:
                result = await proceed(call)
                if result.replayed:
                    outcome = "replayed"
                return result
            except PolicyDenied:
                outcome = "denied"
                raise
            except BudgetExceeded:
                outcome = "denied"
                raise
            except KernosError:
                outcome = "failed"
                raise
            except Exception as exc:
                # LangGraph's interrupt is an exception too; it is not a failure.
                outcome = "interrupted" if _is_interrupt(exc) else "failed"
                raise
            finally:
                attrs = {names.ATTR_SYSCALL_KIND: call.kind.value, "outcome": outcome}
                # Tools and models are registered (few), so they may label a series.
                if call.kind is SyscallKind.TOOL_CALL:
                    attrs["gen_ai.tool.name"] = call.target
                elif call.kind is SyscallKind.LLM_CHAT:
                    attrs["gen_ai.request.model"] = call.target
                self._duration.record(time.perf_counter() - started, attrs)
                self._count.add(1, attrs)
                span.set_attribute("kernos.outcome", outcome)


def _is_interrupt(exc: BaseException) -> bool:
    from langgraph.errors import GraphBubbleUp

    return isinstance(exc, GraphBubbleUp)


class ReplayStage(Stage):
    """Returns the journalled result of a syscall that already completed under this key."""

    name = "replay"

    def __init__(self, db: Database, index: JournalIndex | None = None) -> None:
        self._db = db
        self._index = index

    async def handle(self, call: Syscall, proceed: Proceed) -> SyscallResult:
        if self._index is not None and not self._index.may_be_done(call.process.pid, call.key):
            return await proceed(call)
        async with self._db.read() as session:
            row = await session.get(SyscallRow, call.key)
            done = None if row is None or row.status != "done" else row
        if done is None:
            return await proceed(call)
        if call.interrupts:
            # Keep LangGraph's interrupt indexes aligned within the task: the answer to this
            # interrupt is among the task's resume values, so this returns at once.
            from langgraph.types import interrupt

            interrupt({"syscall_key": call.key, "replay": True})
        usage = Usage(
            input_tokens=done.input_tokens,
            output_tokens=done.output_tokens,
            cost=done.cost,
            tool_calls=1 if call.kind is SyscallKind.TOOL_CALL else 0,
            llm_calls=1 if call.kind is SyscallKind.LLM_CHAT else 0,
        )
        return SyscallResult(value=done.result, usage=usage, replayed=True)


_OBJECTS: dict[SyscallKind, tuple[str, str]] = {
    SyscallKind.TOOL_CALL: ("tool", "call"),
    SyscallKind.LLM_CHAT: ("model", "call"),
    SyscallKind.HUMAN_ASK: ("approval", "write"),
    SyscallKind.MEMORY_SEARCH: ("memory", "read"),
    SyscallKind.MEMORY_PUT: ("memory", "write"),
    SyscallKind.MEMORY_FORGET: ("memory", "write"),
    SyscallKind.MEMORY_GET: ("memory", "read"),
    SyscallKind.MEMORY_LIST: ("memory", "read"),
    SyscallKind.PROCESS_SPAWN: ("agent", "spawn"),
    SyscallKind.EVENT_EMIT: ("event", "write"),
}


def auth_request(call: Syscall) -> AuthRequest:
    """The authorization question a syscall asks (object ``tool:NAME`` etc., action)."""
    prefix, action = _OBJECTS[call.kind]
    return AuthRequest(
        principal=call.process.owner,
        tenant=call.process.tenant,
        obj=f"{prefix}:{call.target}",
        action=action,
        pid=call.process.pid,
        agent=call.process.agent,
        parent_owner=call.process.parent_owner,
        ancestors=call.process.ancestors,
        args=call.args,
    )


class AuthorizeStage(Stage):
    """Asks the authorizer; a denial is audited and raised as ``PolicyDenied``."""

    name = "authorize"

    def __init__(self, services: StageServices) -> None:
        self._s = services

    async def handle(self, call: Syscall, proceed: Proceed) -> SyscallResult:
        request = auth_request(call)
        decision = await self._s.authorizer.authorize(request)
        if decision.allowed:
            call.attributes["rule"] = decision.rule
            call.decision = decision
            return await proceed(call)

        def audit_denial(session: Session) -> None:
            self._s.audit.append(
                session,
                _record(
                    call, "syscall.denied", decision="deny", rule=decision.rule, args=call.args
                ),
            )

        await self._s.db.write(audit_denial)
        raise PolicyDenied(
            f"{request.principal.subject} may not {request.action} {request.obj} "
            f"(process {call.process.pid}, rule: {decision.rule})"
        )


class BudgetStage(Stage):
    """Refuses a call once the process's budget is spent (audited ``BudgetExceeded``).

    An ``llm.chat`` call is checked before it is sent: one asking for more ``max_tokens``
    (``LLM_MAX_TOKENS``) than the process's token budget has left — counting what its other
    calls in flight asked for — is refused; one without ``max_tokens`` gets the remainder as
    its allowance (``LLM_TOKEN_ALLOWANCE``). What the call really used is charged afterwards
    (journal stage, from ``SyscallResult.usage``).
    """

    name = "budget"

    def __init__(self, services: StageServices) -> None:
        self._s = services
        self._held_tokens: dict[int, int] = {}  # max_tokens of each process's calls in flight

    async def handle(self, call: Syscall, proceed: Proceed) -> SyscallResult:
        pid = call.process.pid
        budgets = call.process.budgets
        used = self._s.usage.used(pid)
        problem: tuple[str, str] | None = None
        if budgets.max_tokens is not None and used.tokens >= budgets.max_tokens:
            problem = ("max_tokens", f"used {used.tokens} of {budgets.max_tokens} tokens")
        elif budgets.max_cost is not None and used.cost >= budgets.max_cost:
            problem = ("max_cost", f"spent {used.cost:.4f} of {budgets.max_cost:.4f}")
        elif budgets.max_wall_seconds is not None:
            wall = self._s.usage.wall_seconds(pid)
            if wall >= budgets.max_wall_seconds:
                problem = (
                    "max_wall_seconds",
                    f"ran {wall:.1f} s of {budgets.max_wall_seconds:.1f} s",
                )
        reserved = False
        if problem is None and call.kind is SyscallKind.TOOL_CALL:
            before = self._s.usage.reserve_tool_call(pid)
            reserved = True
            if budgets.max_tool_calls is not None and before >= budgets.max_tool_calls:
                problem = (
                    "max_tool_calls",
                    f"used {before} of {budgets.max_tool_calls} tool calls",
                )
        held = 0
        if problem is None and call.kind is SyscallKind.LLM_CHAT and budgets.max_tokens:
            remaining = budgets.max_tokens - used.tokens - self._held_tokens.get(pid, 0)
            wanted = call.attributes.get(LLM_MAX_TOKENS)
            if wanted is not None and int(wanted) > remaining:
                problem = (
                    "max_tokens",
                    f"the model call asks for up to {int(wanted)} tokens; "
                    f"{max(remaining, 0)} of {budgets.max_tokens} remain",
                )
            elif wanted is not None:
                held = int(wanted)
                self._held_tokens[pid] = self._held_tokens.get(pid, 0) + held
            else:
                call.attributes[LLM_TOKEN_ALLOWANCE] = max(remaining, 0)
        if problem is not None:
            if reserved:
                self._s.usage.release_tool_call(pid)
            rule, detail = problem

            def audit_exceeded(session: Session) -> None:
                self._s.audit.append(
                    session,
                    _record(call, "syscall.denied", decision="deny", rule=f"budget:{rule}"),
                )

            await self._s.db.write(audit_exceeded)
            raise BudgetExceeded(f"process {pid} exceeded its budget: {detail}")
        try:
            return await proceed(call)
        finally:
            if reserved:
                self._s.usage.release_tool_call(pid)
            if held:
                left = self._held_tokens.get(pid, 0) - held
                if left > 0:
                    self._held_tokens[pid] = left
                else:
                    self._held_tokens.pop(pid, None)


class ApprovalStage(Stage):
    """``human.ask``, tools that require approval and calls the policy requires approval for
    (``Decision.approval``) wait for a human through ``interrupt()``.

    The approval record names the role that may answer, and — from the policy's requirement —
    its deadline on the kernel clock and escalation chain (``kernos.kernel.approvals`` moves it
    along the chain). An answer that denies, or an approval that expired, raises
    ``ApprovalDenied`` (an expired ``human.ask`` too: nobody answered it).
    """

    name = "approval"

    def __init__(self, services: StageServices) -> None:
        self._s = services

    async def handle(self, call: Syscall, proceed: Proceed) -> SyscallResult:
        if not call.interrupts:
            return await proceed(call)
        from langgraph.types import interrupt

        approval_id, role = await self._ensure_approval(call)
        answer = interrupt(
            {
                "approval_id": approval_id,
                "syscall_key": call.key,
                "kind": call.kind.value,
                "question": call.question,
                "proposed": None if call.kind is SyscallKind.HUMAN_ASK else _proposal(call),
                "required_role": role,
            }
        )
        call.attributes["answer"] = answer
        if isinstance(answer, dict) and answer.get("expired"):
            raise ApprovalDenied(
                f"{call.target} was not approved: {answer.get('comment') or 'it expired'}"
            )
        if call.kind is not SyscallKind.HUMAN_ASK and not _approved(answer):
            comment = answer.get("comment") if isinstance(answer, dict) else None
            by = answer.get("by") if isinstance(answer, dict) else None
            raise ApprovalDenied(
                f"{call.target} was not approved"
                + (f" by {by}" if by else "")
                + (f": {comment}" if comment else "")
            )
        return await proceed(call)

    async def _ensure_approval(self, call: Syscall) -> tuple[str, str | None]:
        requirement = call.approval
        role = requirement.role if requirement is not None else call.required_role
        step = requirement.deadline_seconds if requirement is not None else None
        # The route: the first role, then the escalation chain (``level`` indexes it).
        route = [requirement.role, *requirement.escalation] if requirement is not None else None
        rule = (requirement.rule or None) if requirement is not None else None
        now = self._s.clock.now()

        def job(session: Session) -> tuple[str, str | None]:
            existing = session.execute(
                select(ApprovalRow.id, ApprovalRow.required_role).where(
                    ApprovalRow.syscall_key == call.key
                )
            ).first()
            if existing is not None:
                return existing[0], existing[1]
            tenant_id = session.scalar(
                select(TenantRow.id).where(TenantRow.name == call.process.tenant)
            )
            approval_id = str(uuid.uuid4())
            session.add(
                ApprovalRow(
                    id=approval_id,
                    syscall_key=call.key,
                    pid=call.process.pid,
                    tenant_id=tenant_id,
                    kind=call.kind.value,
                    question=call.question or f"Allow {call.target}?",
                    proposed=None if call.kind is SyscallKind.HUMAN_ASK else _proposal(call),
                    required_role=role,
                    status="pending",
                    created_at=now,
                    deadline=None if step is None else now + timedelta(seconds=step),
                    step_seconds=step,
                    escalation=route,
                    level=0,
                    rule=rule,
                )
            )
            self._s.audit.append(
                session,
                _record(
                    call,
                    "approval.requested",
                    summary=call.question,
                    rule=rule,
                ),
            )
            created.append(approval_id)
            return approval_id, role

        created: list[str] = []
        approval_id, required = await self._s.db.write(job)
        if created and self._s.announce is not None:
            deadline = None if step is None else (now + timedelta(seconds=step)).isoformat()
            data = {
                "approval_id": approval_id,
                "pid": call.process.pid,
                "kind": call.kind.value,
                "question": call.question or f"Allow {call.target}?",
                "proposed": None if call.kind is SyscallKind.HUMAN_ASK else _proposal(call),
                "role": required,
                "level": 0,
                "deadline": deadline,
                "escalation": route,
                "rule": rule,
            }
            try:  # after the commit: a lost announcement never loses the approval itself
                await self._s.announce(
                    "approval.requested",
                    f"{approval_id}.requested",
                    call.process.tenant,
                    data,
                )
            except Exception as exc:
                log.warning("could not announce approval %s: %s", approval_id, exc)
        return approval_id, required


def _proposal(call: Syscall) -> dict[str, Any]:
    return {"tool": call.target, "args": call.args}


def _approved(answer: Any) -> bool:
    return bool(answer.get("approved")) if isinstance(answer, dict) else bool(answer)


class JournalStage(Stage):
    """Commits intent before the effect and result (with audit and usage) before returning."""

    name = "journal"

    def __init__(self, services: StageServices) -> None:
        self._s = services
        self._tenant_ids: dict[str, int] = {}  # this kernel's database only

    async def handle(self, call: Syscall, proceed: Proceed) -> SyscallResult:
        await self._s.db.write(self._intent_job(call))
        try:
            result = await proceed(call)
        except Exception as exc:
            if _is_interrupt(exc):
                raise
            await self._s.db.write(self._failure_job(call, exc))
            raise
        charged = await self._s.db.write(self._result_job(call, result))
        if charged:
            self._s.usage.charge(call.process.pid, result.usage)
            self._s.journal.add(call.process.pid, call.key)
        return result

    def _intent_job(self, call: Syscall) -> Callable[[Session], None]:
        values = {
            "key": call.key,
            "pid": call.process.pid,
            "kind": call.kind.value,
            "target": call.target,
            "status": "intent",
            "args": call.args,
            "attempts": 1,
            "trace_id": call.trace_id,
            "created_at": self._s.clock.now(),
            "input_tokens": 0,
            "output_tokens": 0,
            "cost": 0.0,
        }
        insert = statements(self._s.db.dialect).intent
        retry = statements(self._s.db.dialect).retry_intent
        purged = statements(self._s.db.dialect).purged

        def job(session: Session) -> None:
            if session.execute(purged, {"b_pid": call.process.pid}).first() is not None:
                raise Conflict(
                    f"process {call.process.pid} finished and its journal was purged by "
                    "retention; a purged process makes no more syscalls"
                )
            if session.execute(insert, values).rowcount == 0:  # type: ignore[attr-defined]
                # Interrupted mid-effect before: run again under the same key (the receiving
                # system deduplicates), without a second intent record.
                session.execute(retry, {"b_key": call.key})
                return
            self._s.audit.append(
                session,
                _record(
                    call,
                    "syscall.intent",
                    decision="allow",
                    rule=call.attributes.get("rule"),
                    args=call.args,
                ),
            )

        return job

    def _failure_job(self, call: Syscall, exc: BaseException) -> Callable[[Session], None]:
        code = exc.code if isinstance(exc, KernosError) else type(exc).__name__
        message = str(exc)

        def job(session: Session) -> None:
            row = session.get(SyscallRow, call.key)
            if row is not None and row.status != "done":
                row.status = "failed"
                row.error = {"code": code, "message": message}
                row.finished_at = self._s.clock.now()
            self._s.audit.append(
                session, _record(call, "syscall.failed", summary=f"{code}: {_summary(message)}")
            )

        return job

    def _result_job(self, call: Syscall, result: SyscallResult) -> Callable[[Session], bool]:
        usage = result.usage
        now = self._s.clock.now()
        dialect = self._s.db.dialect
        done = statements(dialect).result
        params = {
            "b_key": call.key,
            "b_result": result.value,
            "b_in": usage.input_tokens,
            "b_out": usage.output_tokens,
            "b_cost": usage.cost,
            "b_at": now,
        }

        def job(session: Session) -> bool:
            if session.execute(done, params).rowcount == 0:  # type: ignore[attr-defined]
                return False  # never charge or audit the same syscall twice
            self._s.audit.append(
                session, _record(call, "syscall.result", summary=_summary(result.value))
            )
            charge(
                session,
                call.process.pid,
                call.process.tenant,
                usage,
                now=now,
                tenant_ids=self._tenant_ids,
                dialect=dialect,
            )
            return True

        return job


class ExecuteStage(Stage):
    """Runs the call's executor inside its GenAI span, with a timeout."""

    name = "execute"

    def __init__(self, telemetry: Telemetry, *, default_timeout: float = 300.0) -> None:
        self._telemetry = telemetry
        self._default_timeout = default_timeout
        self._gen_ai_duration = telemetry.instrument(names.GEN_AI_OPERATION_DURATION)
        self._tokens = telemetry.instrument(names.GEN_AI_TOKEN_USAGE)

    async def handle(self, call: Syscall, proceed: Proceed) -> SyscallResult:
        if call.kind is SyscallKind.TOOL_CALL:
            span_name = names.span_name(
                names.SPAN_EXECUTE_TOOL, **{"gen_ai.tool.name": call.target}
            )
            operation = "execute_tool"
        elif call.kind is SyscallKind.LLM_CHAT:
            span_name = names.span_name(names.SPAN_CHAT, **{"gen_ai.request.model": call.target})
            operation = "chat"
        else:
            span_name, operation = None, None
        timeout = float(call.attributes.get("timeout", self._default_timeout))
        if span_name is None:
            return await asyncio.wait_for(call.executor(call), timeout)
        started = time.perf_counter()
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation or ""}
        if call.kind is SyscallKind.TOOL_CALL:
            attributes["gen_ai.tool.name"] = call.target
            attributes["gen_ai.tool.call.id"] = call.key
        else:
            attributes["gen_ai.request.model"] = call.target
        with self._telemetry.tracer.start_as_current_span(span_name, attributes=attributes) as span:
            result = await asyncio.wait_for(call.executor(call), timeout)
            attrs = {"gen_ai.operation.name": operation or ""}
            if call.kind is SyscallKind.LLM_CHAT:
                attrs["gen_ai.request.model"] = call.target
            # The LLM scheduler records its calls itself, with backend, tenant and process.
            accounted = bool(call.attributes.get(LLM_ACCOUNTED))
            if not accounted:
                self._gen_ai_duration.record(time.perf_counter() - started, attrs)
            if call.kind is SyscallKind.LLM_CHAT:
                span.set_attribute("gen_ai.usage.input_tokens", result.usage.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", result.usage.output_tokens)
            if call.kind is SyscallKind.LLM_CHAT and not accounted:
                self._tokens.record(
                    result.usage.input_tokens, {**attrs, "gen_ai.token.type": "input"}
                )
                self._tokens.record(
                    result.usage.output_tokens, {**attrs, "gen_ai.token.type": "output"}
                )
            return result


def default_stages(services: StageServices) -> list[Stage]:
    """The pipeline in its documented order."""
    return [
        TraceStage(services.telemetry),
        ReplayStage(services.db, services.journal),
        AuthorizeStage(services),
        BudgetStage(services),
        ApprovalStage(services),
        JournalStage(services),
        ExecuteStage(services.telemetry),
    ]
