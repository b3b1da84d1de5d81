"""Processes: the process table, lifecycle signals, and the runner that drives each graph.

Execution model (ARCHITECTURE §2): each live process is an asyncio task driving its LangGraph
graph step by step (``astream`` with ``durability="sync"``), so a checkpoint is committed at
every step boundary. Suspend and kill take effect at the next boundary; resume restarts from
the last checkpoint — the same path as recovery after a crash. A process whose graph stops on
an ``interrupt()`` (``human.ask``, a tool that requires approval) waits for a human with its
approval records; an answer resumes it with ``Command(resume=...)``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from kernos.kernel import telemetry as names
from kernos.kernel.approvals import DEFAULT_APPROVER, ApprovalInfo, Approvals
from kernos.kernel.catalog import AgentBuild, AgentSpec, Budgets
from kernos.kernel.errors import (
    BudgetExceeded,
    ConfigError,
    Conflict,
    InvalidInput,
    KernosError,
    NotFound,
)
from kernos.kernel.governed import CONFIG_KEY, KernelTool, ProcessContext
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.process_records import (
    LIVE,
    SETTLED,
    TERMINAL,
    ProcessInfo,
    ProcessState,
    Signal,
    budgets_dict,
    jsonable_state,
    process_info,
)
from kernos.kernel.requests import REQUEST_ID
from kernos.kernel.storage.models import (
    PrincipalRow,
    ProcessRow,
    SyscallRow,
    TenantRow,
)
from kernos.kernel.syscalls import Actor, AuditRecord, AuthRequest, ProcessRef

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from kernos.kernel.kernel import Kernel

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Runner:
    task: asyncio.Task[None]
    signal: Signal | None = None


class ProcessManager:
    """Spawns, signals, runs and recovers processes of one kernel."""

    def __init__(self, kernel: Kernel, checkpointer: BaseCheckpointSaver[Any]) -> None:
        self._kernel = kernel
        self._db = kernel.db
        self._clock = kernel.clock
        self._checkpointer = checkpointer
        self._runners: dict[int, _Runner] = {}
        self._watch: dict[int, asyncio.Condition] = {}
        self._graphs: dict[str, Any] = {}
        self._store: Any = None
        self._closing = False
        # Bounds how many processes step at once: a burst of spawns is accepted (committed)
        # at full speed while their first steps queue here instead of starving the loop.
        self._slots = asyncio.Semaphore(kernel.settings.max_running_processes)
        self._approvals = Approvals(kernel, resume=self._resume_answered)

    # -- Spawning -----------------------------------------------------------------------------

    async def spawn(
        self,
        agent: str,
        input: dict[str, Any] | None = None,
        *,
        principal: Principal,
        parent_pid: int | None = None,
        priority: int | None = None,
        budgets: Budgets | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
    ) -> ProcessInfo:
        """Commit a new process for ``agent`` and start it; returns it as accepted.

        A ``priority`` above the agent's default needs ``admin`` on ``agent:NAME`` (the LLM
        scheduler serves higher priorities first, across tenants). With ``idempotency_key``, a
        second spawn under the same key returns the first process
        instead of creating another (triggers, child spawns and retried API calls use it).
        With ``webhook_url``, its end publishes a ``process.finished`` event in the same
        transaction, which the API's webhook notifier delivers, signed, at least once.
        Raises ``NotFound`` (unknown agent, parent), ``InvalidInput`` (input fails the agent's
        schema) or ``Conflict`` (parent not live or in another tenant).
        """
        if parent_pid is None:  # a child's spawn is a syscall, authorized by the pipeline
            await self._kernel.authorize(principal, f"agent:{agent}", "spawn")
        spec = self._agent(agent)
        if parent_pid is None and priority is not None and priority > spec.priority:
            # Priority outranks fair share in the LLM scheduler: raising it is an admin's call.
            await self._kernel.authorize(principal, f"agent:{agent}", "admin")
        payload = self._validate_input(spec, input or {})
        chosen = budgets or spec.budgets
        now = self._clock.now()
        request_id = REQUEST_ID.get()

        def job(session: Session) -> tuple[ProcessInfo, bool]:
            tenant_id = session.scalar(
                select(TenantRow.id).where(TenantRow.name == principal.tenant)
            )
            if tenant_id is None:
                raise NotFound(f"tenant {principal.tenant!r} does not exist")
            if idempotency_key is not None:
                earlier = session.scalar(
                    select(ProcessRow).where(ProcessRow.spawn_key == idempotency_key)
                )
                if earlier is not None:
                    if earlier.tenant_id != tenant_id:
                        raise Conflict("that idempotency key belongs to another tenant's spawn")
                    return process_info(earlier, principal.tenant), False
            correlation = correlation_id
            if parent_pid is not None:
                parent = session.get(ProcessRow, parent_pid)
                if parent is None or parent.tenant_id != tenant_id:
                    raise NotFound(f"no process {parent_pid} in tenant {principal.tenant!r}")
                if ProcessState(parent.state) not in LIVE:
                    raise Conflict(f"parent process {parent_pid} is {parent.state}, not live")
                correlation = correlation or parent.correlation_id
            row = ProcessRow(
                tenant_id=tenant_id,
                owner=principal.name,
                agent=spec.name,
                agent_version=spec.version,
                parent_pid=parent_pid,
                state=ProcessState.PENDING.value,
                priority=spec.priority if priority is None else priority,
                thread_id=str(uuid.uuid4()),
                correlation_id=correlation or request_id or str(uuid.uuid4()),
                input=payload,
                budgets=budgets_dict(chosen),
                input_tokens=0,
                output_tokens=0,
                tool_calls=0,
                llm_calls=0,
                cost=0.0,
                wall_seconds=0.0,
                steps=0,
                created_at=now,
                updated_at=now,
                spawn_key=idempotency_key,
                webhook_url=webhook_url,
            )
            session.add(row)
            session.flush()
            self._kernel.audit_sink.append(
                session,
                AuditRecord(
                    event="process.spawned",
                    tenant=principal.tenant,
                    principal=principal.subject,
                    pid=row.pid,
                    target=spec.ref,
                    correlation_id=row.correlation_id,
                    summary=f"parent {parent_pid}" if parent_pid else None,
                ),
            )
            return process_info(row, principal.tenant), True

        info, created = await self._db.write(job)
        if created:
            self._start(info.pid)
        return info

    def _agent(self, name: str) -> AgentSpec:
        spec = self._kernel.catalog.agents.get(name)
        if spec is None:
            known = ", ".join(sorted(self._kernel.catalog.agents)) or "none installed"
            raise NotFound(f"no agent named {name!r} (agents: {known})")
        return spec

    @staticmethod
    def _validate_input(spec: AgentSpec, data: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise InvalidInput(f"input for agent {spec.name!r} must be a JSON object")
        if spec.input_schema is None:
            return data
        try:
            return spec.input_schema.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(f"input for agent {spec.name!r} is invalid: {problems}") from None

    # -- Reading ------------------------------------------------------------------------------

    async def authorize(self, principal: Principal, obj: str, action: str) -> None:
        """Raise ``PolicyDenied`` unless ``principal`` may do ``action`` on ``obj`` (for tools
        acting on the process table as their process's owner)."""
        await self._kernel.authorize(principal, obj, action)

    async def get(self, pid: int, *, tenant: str | None = None) -> ProcessInfo:
        """The process ``pid`` (``NotFound`` if missing or in another tenant than ``tenant``)."""

        def job(session: Session) -> Any:
            return session.execute(
                select(ProcessRow, TenantRow.name)
                .join(TenantRow, TenantRow.id == ProcessRow.tenant_id)
                .where(ProcessRow.pid == pid)
            ).first()

        found = await self._db.query(job)
        if found is None or (tenant is not None and found[1] != tenant):
            raise NotFound(f"no process {pid}" + (f" in tenant {tenant!r}" if tenant else ""))
        return process_info(found[0], found[1])

    async def authorize_process(self, process: ProcessRef, obj: str, action: str) -> None:
        """Raise ``PolicyDenied`` (audited) unless ``process`` may do ``action`` on ``obj``,
        asked as the pipeline asks for a syscall: owner, agent and ancestors."""
        request = AuthRequest(
            principal=process.owner,
            tenant=process.tenant,
            obj=obj,
            action=action,
            pid=process.pid,
            agent=process.agent,
            parent_owner=process.parent_owner,
            ancestors=process.ancestors,
        )
        decision = await self._kernel.authorizer.authorize(request)
        if not decision.allowed:
            await self._kernel.deny(process.owner, obj, action, rule=decision.rule)

    async def checkpoint_state(self, pid: int, *, tenant: str | None = None) -> dict[str, Any]:
        """The current checkpoint of ``pid`` as ``kernos.kernel.process_view`` shows it
        (``NotFound`` if missing or in another tenant than ``tenant``)."""
        from kernos.kernel.process_view import checkpoint_view

        info = await self.get(pid, tenant=tenant)
        spec = self._kernel.catalog.agents.get(info.agent)
        graph = None
        if spec is not None and spec.version == info.agent_version:
            try:
                graph = self._graph(spec)
            except NotFound:  # a tool went missing: the raw checkpoint still reads
                graph = None
        return await checkpoint_view(info, self._checkpointer, graph=graph)

    async def by_spawn_key(self, key: str, *, tenant: str) -> ProcessInfo | None:
        """The process a spawn with idempotency key ``key`` created in ``tenant``, if any."""
        async with self._db.read() as session:
            found = (
                await session.execute(
                    select(ProcessRow, TenantRow.name)
                    .join(TenantRow, TenantRow.id == ProcessRow.tenant_id)
                    .where(ProcessRow.spawn_key == key, TenantRow.name == tenant)
                )
            ).first()
        return None if found is None else process_info(found[0], found[1])

    async def list_processes(
        self,
        *,
        tenant: str | None = None,
        states: Iterable[ProcessState] | None = None,
        agent: str | None = None,
        owner: str | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> list[ProcessInfo]:
        """Processes, newest first, optionally of one tenant, some states, an agent or an
        owner; ``before`` a pid and ``limit`` page through them (keyset, stable under inserts).
        """
        query = select(ProcessRow, TenantRow.name).join(
            TenantRow, TenantRow.id == ProcessRow.tenant_id
        )
        if tenant is not None:
            query = query.where(TenantRow.name == tenant)
        if states is not None:
            query = query.where(ProcessRow.state.in_([s.value for s in states]))
        if agent is not None:
            query = query.where(ProcessRow.agent == agent)
        if owner is not None:
            query = query.where(ProcessRow.owner == owner)
        if before is not None:
            query = query.where(ProcessRow.pid < before)
        query = query.order_by(ProcessRow.pid.desc())
        if limit is not None:
            query = query.limit(limit)
        async with self._db.read() as session:
            rows = (await session.execute(query)).all()
        return [process_info(row, name) for row, name in rows]

    async def wait(
        self,
        pid: int,
        *,
        timeout: float | None = None,
        until: frozenset[ProcessState] = TERMINAL,
    ) -> ProcessInfo:
        """Wait until the process is in one of ``until`` (default: finished) or ``timeout``.

        Returns the process either way; check its ``state``.
        """
        condition = self._watch.setdefault(pid, asyncio.Condition())

        async def settled() -> ProcessInfo:
            async with condition:
                while True:
                    info = await self.get(pid)
                    if info.state in until:
                        return info
                    await condition.wait()

        try:
            return await asyncio.wait_for(settled(), timeout)
        except TimeoutError:
            return await self.get(pid)

    async def _notify(self, pid: int) -> None:
        condition = self._watch.get(pid)
        if condition is not None:
            async with condition:
                condition.notify_all()

    # -- Signals ------------------------------------------------------------------------------

    async def signal(
        self,
        pid: int,
        signal: Signal,
        *,
        tenant: str | None = None,
        by: Principal | None = None,
    ) -> ProcessInfo:
        """Suspend, resume or kill (with its children) a process.

        ``by`` is the operator asking (authorized for ``signal`` on ``process:PID`` and kept to
        its own tenant); ``None`` means the kernel itself. Raises ``PolicyDenied``, ``NotFound``
        and ``Conflict`` (for example resuming a process that is not suspended).
        """
        if by is not None:
            await self._kernel.authorize(by, f"process:{pid}", "signal")
            tenant = by.tenant
        info = await self.get(pid, tenant=tenant)
        if signal is Signal.KILL:
            for victim in await self._descendants(pid):
                await self._kill_one(victim)
            await self._kill_one(pid)
        elif signal is Signal.SUSPEND:
            if info.state not in LIVE or info.state is ProcessState.SUSPENDED:
                raise Conflict(f"process {pid} is {info.state}; only a live process can suspend")
            runner = self._runners.get(pid)
            if runner is not None:
                runner.signal = Signal.SUSPEND
            else:
                await self._set_state(pid, ProcessState.SUSPENDED, waiting_on=info.waiting_on)
        else:
            if info.state is not ProcessState.SUSPENDED:
                raise Conflict(f"process {pid} is {info.state}, not suspended; nothing to resume")
            await self._set_state(pid, ProcessState.PENDING, waiting_on=None)
            self._start(pid)
        return await self.get(pid)

    async def _descendants(self, pid: int) -> list[int]:
        found: list[int] = []
        frontier = [pid]
        async with self._db.read() as session:
            while frontier:
                children = list(
                    await session.scalars(
                        select(ProcessRow.pid).where(ProcessRow.parent_pid.in_(frontier))
                    )
                )
                found.extend(children)
                frontier = children
        return list(reversed(found))

    async def _kill_one(self, pid: int) -> None:
        info = await self.get(pid)
        if info.state in TERMINAL:
            return
        runner = self._runners.get(pid)
        if runner is not None and not runner.task.done():
            runner.signal = Signal.KILL
            return
        await self._finish(pid, ProcessState.KILLED, error={"code": "killed", "message": "killed"})

    # -- Approvals ----------------------------------------------------------------------------

    @property
    def approval_desk(self) -> Approvals:
        """The kernel's approvals: answers, deadlines and escalation (``kernel/approvals.py``)."""
        return self._approvals

    async def approvals(
        self, *, tenant: str | None = None, status: str | None = "pending"
    ) -> list[ApprovalInfo]:
        """Approvals, oldest first, of one tenant and status (``None``: any status)."""
        return await self._approvals.list_approvals(tenant=tenant, status=status)

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
        expired).
        """
        return await self._approvals.decide(
            approval_id, approved=approved, by=by, value=value, comment=comment
        )

    async def _resume_answered(self, pid: int) -> None:
        """Go on with a waiting process whose approval was answered or expired; a suspended
        one keeps the answer until it is resumed."""
        if pid not in self._runners and await self._set_state(
            pid,
            ProcessState.PENDING,
            waiting_on=None,
            expect=frozenset({ProcessState.WAITING}),
        ):
            self._start(pid)

    async def _emit(
        self, topic: str, data: dict[str, Any], *, event_id: str, process: ProcessRef
    ) -> None:
        from kernos.kernel.events import Event

        await self._kernel.events.publish(
            Event(
                id=event_id,
                topic=topic,
                tenant=process.tenant,
                source=process.owner.subject,
                data=data,
                correlation_id=process.correlation_id,
            )
        )

    async def _spawn_child(
        self, agent: str, input: dict[str, Any], *, parent: ProcessRef, idempotency_key: str
    ) -> ProcessInfo:
        return await self.spawn(
            agent,
            input,
            principal=parent.owner,
            parent_pid=parent.pid,
            correlation_id=parent.correlation_id,
            idempotency_key=idempotency_key,
        )

    # -- Running ------------------------------------------------------------------------------

    def _start(self, pid: int) -> None:
        if self._closing or pid in self._runners:
            return
        task = asyncio.create_task(self._drive(pid), name=f"kernos-process-{pid}")
        self._runners[pid] = _Runner(task=task)

    async def reattach(self) -> int:
        """Start every process the table says is live and able to make progress, and arm the
        approval deadlines; returns how many processes started."""
        started = 0
        for info in await self.list_processes(states=LIVE):
            if info.state in (ProcessState.PENDING, ProcessState.RUNNING) or (
                info.state is ProcessState.WAITING
                and await self._approvals.undelivered_answers(info.pid)
            ):
                self._start(info.pid)
                started += 1
        await self._approvals.start()
        return started

    async def shutdown(self) -> None:
        """Stop driving processes; they stay live in the table and resume on next start."""
        self._closing = True
        await self._approvals.stop()
        tasks = [r.task for r in self._runners.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runners.clear()

    def _graph(self, spec: AgentSpec) -> Any:
        graph = self._graphs.get(spec.ref)
        if graph is None:
            missing = [name for name in spec.tools if name not in self._kernel.catalog.tools]
            if missing:
                raise NotFound(
                    f"agent {spec.ref} needs tools that are not installed: {', '.join(missing)}"
                )
            tools = [KernelTool.from_spec(self._kernel.catalog.tools[name]) for name in spec.tools]
            model = self._kernel.chat_model()
            built = spec.build(AgentBuild(tools=list(tools), model=model))
            update: dict[str, Any] = {"checkpointer": self._checkpointer}
            if getattr(built, "store", None) is None:  # a store of the agent's own stays
                update["store"] = self._graph_store()
            graph = built.copy(update=update)
            self._graphs[spec.ref] = graph
        return graph

    def _graph_store(self) -> Any:
        """The LangGraph store ``KERNOS_GRAPH_STORE`` names (built once), or ``None``."""
        name = self._kernel.settings.graph_store
        if not name:
            return None
        if self._store is None:
            specs = {s.name: s for s in self._kernel.plugins.graph_stores()}
            if name not in specs:
                known = ", ".join(sorted(specs)) or "none registered"
                raise ConfigError(
                    f"no LangGraph store named {name!r} (available: {known}); set "
                    "KERNOS_GRAPH_STORE to one of them, or to an empty value for none"
                )
            self._store = specs[name].build(self._kernel)
        return self._store

    async def _process_ref(
        self, info: ProcessInfo, *, asked: frozenset[str] = frozenset()
    ) -> ProcessRef:
        ancestors: list[Actor] = []
        above = info.parent_pid
        while above is not None:  # a child acts with at most the grants of every ancestor
            parent = await self.get(above)
            owner = await self._principal(parent.tenant, parent.owner)
            ancestors.append(Actor(owner=owner, agent=parent.agent))
            above = parent.parent_pid
        return ProcessRef(
            pid=info.pid,
            tenant=info.tenant,
            owner=await self._principal(info.tenant, info.owner),
            agent=info.agent,
            parent_pid=info.parent_pid,
            parent_owner=ancestors[0].owner if ancestors else None,
            correlation_id=info.correlation_id,
            budgets=info.budgets,
            ancestors=tuple(ancestors),
            asked=asked,
            priority=info.priority,
        )

    async def _principal(self, tenant: str, name: str) -> Principal:
        async with self._db.read() as session:
            kind = await session.scalar(
                select(PrincipalRow.kind)
                .join(TenantRow, TenantRow.id == PrincipalRow.tenant_id)
                .where(TenantRow.name == tenant, PrincipalRow.name == name)
            )
        return Principal(tenant=tenant, name=name, kind=PrincipalKind(kind or "service"))

    async def _drive(self, pid: int) -> None:
        """Run the process until it finishes, waits, or a signal stops it at a step boundary."""
        usage_book = self._kernel.usage
        outcome: tuple[ProcessState, dict[str, Any]]
        try:
            async with self._slots:
                outcome = await self._run_graph(pid)
        except asyncio.CancelledError:
            # Kernel shutdown: the process stays live in the table and resumes on next start.
            usage_book.stop_clock(pid)
            self._kernel.journal.forget(pid)
            self._runners.pop(pid, None)
            raise
        except KernosError as exc:
            outcome = (ProcessState.FAILED, {"error": {"code": exc.code, "message": str(exc)}})
        except Exception as exc:
            log.exception("process %s failed", pid, extra={"pid": pid})
            message = str(exc) or type(exc).__name__
            outcome = (
                ProcessState.FAILED,
                {"error": {"code": type(exc).__name__, "message": message}},
            )
        wall = usage_book.stop_clock(pid)
        usage_book.forget(pid)
        self._kernel.journal.forget(pid)
        # From here on, signals take the no-runner path; one that arrived during the run's
        # last step still counts.
        runner = self._runners.pop(pid, None)
        late = runner.signal if runner is not None else None
        state, details = outcome
        if late is Signal.KILL and state not in TERMINAL:
            state, details = ProcessState.KILLED, {"error": {"code": "killed", "message": "killed"}}
        elif late is Signal.SUSPEND and state not in TERMINAL:
            state, details = ProcessState.SUSPENDED, {}
        await self._save_wall(pid, wall)
        if state in TERMINAL:
            await self._finish(pid, state, output=details.get("output"), error=details.get("error"))
            return
        waiting_on = "human" if state is ProcessState.WAITING else None
        changed = await self._set_state(
            pid,
            state,
            waiting_on=waiting_on,
            expect=frozenset({ProcessState.RUNNING, ProcessState.PENDING}),
        )
        if (
            changed
            and state is ProcessState.WAITING
            and await self._approvals.undelivered_answers(pid)
        ):
            self._start(pid)  # answered while this run was still going: go on at once

    async def _run_graph(self, pid: int) -> tuple[ProcessState, dict[str, Any]]:
        runner = self._runners.get(pid)
        if runner is not None and runner.signal is Signal.KILL:  # killed while queued
            return ProcessState.KILLED, {"error": {"code": "killed", "message": "killed"}}
        if runner is not None and runner.signal is Signal.SUSPEND:
            runner.signal = None
            return ProcessState.SUSPENDED, {}
        info = await self.get(pid)
        spec = self._agent(info.agent)
        asked = await self._approvals.for_process(pid)
        ref = await self._process_ref(info, asked=asked.asked)
        graph = self._graph(spec)
        config: RunnableConfig = {
            "configurable": {
                "thread_id": info.thread_id,
                CONFIG_KEY: ProcessContext(
                    process=ref,
                    pipeline=self._kernel.pipeline,
                    emit=self._emit,
                    spawn=self._spawn_child,
                    memory=self._kernel.memory,
                    processes=self,
                    models=self._kernel.model_runtime,
                ),
            },
            "recursion_limit": 1000,
        }
        answers = asked.answers
        if answers:
            from langgraph.types import Command

            stream_input: Any = Command(resume=answers)
        elif await self._checkpointer.aget_tuple(config) is not None:
            stream_input = None  # resume from the last checkpoint (the recovery path)
        else:
            stream_input = info.input
        # One span per run of the graph (a start, or a resume after a wait): every syscall of
        # the run is its child, so a run is one trace (joined to the caller's, if any).
        span_name = names.span_name(names.SPAN_INVOKE_AGENT, **{"gen_ai.agent.name": info.agent})
        attributes: dict[str, str | int] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": info.agent,
            "gen_ai.conversation.id": info.thread_id,
            names.ATTR_PID: pid,
            names.ATTR_TENANT: info.tenant,
        }
        tracer = self._kernel.telemetry.tracer
        with tracer.start_as_current_span(span_name, attributes=attributes) as span:
            outcome = await self._stream(pid, info, graph, config, stream_input, answers)
            span.set_attribute("kernos.process.state", outcome[0].value)
            return outcome

    async def _stream(
        self,
        pid: int,
        info: ProcessInfo,
        graph: Any,
        config: RunnableConfig,
        stream_input: Any,
        answers: dict[str, Any],
    ) -> tuple[ProcessState, dict[str, Any]]:
        """Run the graph from ``stream_input`` to its next stop; what state that leaves."""
        usage_book = self._kernel.usage
        usage_book.load(pid, info.usage, info.wall_seconds)
        async with self._db.read() as session:
            done_keys = await session.scalars(
                select(SyscallRow.key).where(SyscallRow.pid == pid, SyscallRow.status == "done")
            )
            self._kernel.journal.load(pid, done_keys)
        await self._set_state(pid, ProcessState.RUNNING, waiting_on=None)
        usage_book.start_clock(pid)
        stopped_by: Signal | None = None
        async for _update in graph.astream(
            stream_input, config, stream_mode="updates", durability="sync"
        ):
            runner = self._runners.get(pid)
            if runner is not None and runner.signal is not None:
                stopped_by = runner.signal
                runner.signal = None
                break
            self._check_wall_budget(pid, info.budgets)
        if answers:
            await self._approvals.mark_delivered(pid, list(answers))
        if stopped_by is Signal.KILL:
            return ProcessState.KILLED, {"error": {"code": "killed", "message": "killed"}}
        if stopped_by is Signal.SUSPEND:
            return ProcessState.SUSPENDED, {}
        snapshot = await graph.aget_state(config)
        if snapshot.interrupts:
            await self._approvals.record_interrupts(pid, snapshot.interrupts)
            return ProcessState.WAITING, {}
        return ProcessState.DONE, {"output": jsonable_state(snapshot.values)}

    def _check_wall_budget(self, pid: int, budgets: Budgets) -> None:
        if budgets.max_wall_seconds is None:
            return
        wall = self._kernel.usage.wall_seconds(pid)
        if wall >= budgets.max_wall_seconds:
            raise BudgetExceeded(
                f"process {pid} exceeded its budget: ran {wall:.1f} s of "
                f"{budgets.max_wall_seconds:.1f} s"
            )

    async def _save_wall(self, pid: int, wall: float) -> None:
        def job(session: Session) -> None:
            row = session.get(ProcessRow, pid)
            if row is not None:
                row.wall_seconds = wall

        try:
            await self._db.write(job)
        except KernosError:
            log.warning("could not record wall time of process %s", pid)

    async def _set_state(
        self,
        pid: int,
        state: ProcessState,
        *,
        waiting_on: str | None,
        expect: frozenset[ProcessState] = LIVE,
    ) -> bool:
        """Move a process to ``state`` if it is in one of ``expect``; returns whether it moved.

        Finished processes never move again (a late signal cannot revive one).
        """
        now = self._clock.now()

        def job(session: Session) -> bool:
            row = session.get(ProcessRow, pid)
            if row is None:
                raise NotFound(f"no process {pid}")
            if ProcessState(row.state) not in expect:
                return False
            row.state = state.value
            row.waiting_on = waiting_on
            row.updated_at = now
            return True

        changed = await self._db.write(job)
        await self._notify(pid)
        return changed

    async def _finish(
        self,
        pid: int,
        state: ProcessState,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        now = self._clock.now()

        def job(session: Session) -> None:
            staged.clear()  # the writer re-runs a job whose group commit failed
            found = (
                session.execute(
                    select(ProcessRow, TenantRow.name)
                    .join(TenantRow, TenantRow.id == ProcessRow.tenant_id)
                    .where(ProcessRow.pid == pid)
                )
            ).first()
            if found is None:
                return
            row, tenant = found
            if ProcessState(row.state) in TERMINAL:
                return
            row.state = state.value
            row.waiting_on = None
            row.output = output
            row.error = error
            row.updated_at = now
            row.finished_at = now
            self._kernel.audit_sink.append(
                session,
                AuditRecord(
                    event=f"process.{state.value}",
                    tenant=tenant,
                    principal=f"{tenant}/{row.owner}",
                    pid=pid,
                    target=f"{row.agent}@{row.agent_version}",
                    correlation_id=row.correlation_id,
                    summary=None
                    if error is None
                    else f"{error.get('code')}: {error.get('message')}",
                ),
            )
            if row.webhook_url is not None:
                # In the finish's own transaction: the notification can't be lost in a crash.
                staged.extend(self._kernel.events.publish_in(session, [_finished(row, tenant)]))

        staged: list[int] = []
        await self._db.write(job)
        self._kernel.events.dispatch(staged)
        await self._notify(pid)


def _finished(row: ProcessRow, tenant: str) -> Any:
    """The ``process.finished`` event of a process that has just ended."""
    from kernos.kernel.events import Event

    return Event(
        id=f"process.finished:{row.pid}",
        topic=FINISHED_TOPIC,
        tenant=tenant,
        source=f"{tenant}/{row.owner}",
        data={"pid": row.pid, "state": row.state, "agent": row.agent},
        correlation_id=row.correlation_id,
    )


FINISHED_TOPIC = "process.finished"
"""Topic of the event a process with a webhook publishes when it ends."""


__all__ = [
    "DEFAULT_APPROVER",
    "FINISHED_TOPIC",
    "LIVE",
    "SETTLED",
    "TERMINAL",
    "ApprovalInfo",
    "ProcessInfo",
    "ProcessManager",
    "ProcessState",
    "Signal",
]
