"""Syscalls and the pipeline every one of them passes.

A syscall is anything a process does outside its own graph (``llm.chat``, ``tool.call``,
``human.ask``, ...). The pipeline is an ordered list of stages, each an async middleware that
gets the call and the rest of the pipeline (``proceed``)::

    trace → replay → authorize → budget → approval → journal → execute

* **trace** opens the ``kernos.syscall {kind}`` span first, so every later record carries the
  trace id.
* **replay** returns the journalled result of a syscall that already completed under the same
  deterministic key (after a crash or an interrupt re-ran its step): nothing is authorized,
  charged, asked or audited twice.
* **authorize** asks the ``Authorizer`` (the policy layer plugs in Casbin); denials are audited.
* **budget** refuses a call that would exceed the process's budgets (audited).
* **approval** turns ``human.ask``, tools that require approval and calls the authorizer's
  decision requires approval for (``Decision.approval``: a role, a deadline, an escalation
  chain) into a LangGraph ``interrupt()`` with a persisted approval record.
* **journal** commits the intent (journal row + audit record) before the side effect, and the
  result (journal, audit, usage accounting) in one transaction before the result is returned.
* **execute** runs the call's executor (tool function, model call).

The stage interfaces (``Stage``, ``Authorizer``, ``AuditSink``) are the kernel's; the policy
issue supplies Casbin and the hash-chained audit log behind them.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.orm import Session

from kernos.kernel.catalog import Budgets
from kernos.kernel.identity import Principal

if TYPE_CHECKING:
    from kernos.kernel.kernel import Kernel

log = logging.getLogger(__name__)


class SyscallKind(StrEnum):
    """What a syscall does."""

    LLM_CHAT = "llm.chat"
    TOOL_CALL = "tool.call"
    HUMAN_ASK = "human.ask"
    MEMORY_SEARCH = "memory.search"
    MEMORY_PUT = "memory.put"
    MEMORY_FORGET = "memory.forget"
    MEMORY_GET = "memory.get"
    MEMORY_LIST = "memory.list"
    PROCESS_SPAWN = "process.spawn"
    EVENT_EMIT = "event.emit"


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who a process acts as: its owner principal and its agent."""

    owner: Principal
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessRef:
    """The process a syscall comes from, as the pipeline's stages see it."""

    pid: int
    tenant: str
    owner: Principal
    agent: str
    parent_pid: int | None
    parent_owner: Principal | None
    correlation_id: str
    budgets: Budgets
    ancestors: tuple[Actor, ...] = ()
    """Owner and agent of every process above this one, nearest first."""
    asked: frozenset[str] = frozenset()
    """Keys of this process's syscalls that asked a human in an earlier run: they interrupt
    again when re-run (keeping LangGraph's interrupt indexes aligned), whatever the policy
    says now."""
    priority: int = 0
    """The process's scheduling priority (higher goes first; the LLM scheduler ages it)."""


@dataclass(slots=True, kw_only=True)
class Usage:
    """Resources used, by a call or summed over a process."""

    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    llm_calls: int = 0
    cost: float = 0.0

    def add(self, other: Usage) -> None:
        """Add ``other`` into this one."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.tool_calls += other.tool_calls
        self.llm_calls += other.llm_calls
        self.cost += other.cost

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(slots=True, kw_only=True)
class SyscallResult:
    """What a syscall returned (``value`` is JSON-compatible), and what it cost."""

    value: Any
    usage: Usage = field(default_factory=Usage)
    replayed: bool = False


Executor = Callable[["Syscall"], Awaitable[SyscallResult]]


@dataclass(slots=True, kw_only=True)
class Syscall:
    """One call through the pipeline.

    ``key`` is deterministic — (pid, checkpoint namespace with task id, tool-call id or call
    index) — so a re-run of the same step finds its journalled result, and tools receive it
    as their idempotency key.
    """

    key: str
    kind: SyscallKind
    target: str
    args: dict[str, Any]
    process: ProcessRef
    executor: Executor
    requires_approval: bool = False
    question: str | None = None
    required_role: str | None = None
    trace_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    decision: Decision | None = None
    """The authorizer's decision, once the authorize stage allowed the call."""

    @property
    def approval(self) -> ApprovalRequirement | None:
        """What approval the policy requires for this call (known after authorize)."""
        return self.decision.approval if self.decision is not None else None

    @property
    def interrupts(self) -> bool:
        """Whether the call waits for a human (and so calls ``interrupt()`` on every run).

        ``human.ask``, a tool that requires approval, a call the policy requires approval
        for, and a call that asked before (``ProcessRef.asked``) all do.
        """
        return (
            self.kind is SyscallKind.HUMAN_ASK
            or self.requires_approval
            or self.approval is not None
            or self.key in self.process.asked
        )


LLM_MAX_TOKENS = "max_tokens"
"""``Syscall.attributes`` key of an ``llm.chat`` call's requested ``max_tokens``: the budget
stage refuses the call when it asks for more than the process's remaining token budget."""
LLM_TOKEN_ALLOWANCE = "token_allowance"  # noqa: S105 - a dict key, not a secret
"""``Syscall.attributes`` key the budget stage sets on an ``llm.chat`` call without
``max_tokens`` when the process has a token budget: the most the reply may use."""
LLM_ACCOUNTED = "llm_accounted"
"""``Syscall.attributes`` flag an ``llm.chat`` executor sets when the LLM scheduler already
recorded the call's GenAI metrics (the execute stage then leaves them alone)."""


Proceed = Callable[[Syscall], Awaitable[SyscallResult]]


class Stage(ABC):
    """One step of the syscall pipeline (a middleware)."""

    name: str

    @abstractmethod
    async def handle(self, call: Syscall, proceed: Proceed) -> SyscallResult:
        """Do this stage's work, calling ``proceed(call)`` for the rest of the pipeline.

        Raise a ``KernosError`` (``PolicyDenied``, ``BudgetExceeded``, ...) to refuse the call.
        """


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthRequest:
    """What the authorizer decides on: who, on behalf of which process, does what to what."""

    principal: Principal
    tenant: str
    obj: str
    action: str
    pid: int | None = None
    agent: str | None = None
    parent_owner: Principal | None = None
    ancestors: tuple[Actor, ...] = ()
    """The processes above this one, nearest first: a child acts with at most their grants."""
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequirement:
    """A human must approve the call first: who, by when, and who next if nobody answers."""

    role: str
    """The role that may answer (``approve`` on ``approval:ROLE`` in the policy)."""
    deadline_seconds: float | None = None
    """Seconds (kernel clock) each role has to answer; ``None``: no deadline."""
    escalation: tuple[str, ...] = ()
    """Roles the approval moves to, in order, each time a deadline passes unanswered; once
    they are used up, the approval expires and the call is denied."""
    rule: str = ""
    """The approval rule that required it (recorded on the approval and in the audit log)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """An authorization decision and the rule that made it (recorded in the audit log)."""

    allowed: bool
    rule: str
    approval: ApprovalRequirement | None = None
    """For an allowed call: the approval the policy requires before it runs, if any."""


class Authorizer(ABC):
    """Decides whether a principal may act (the policy layer implements it with Casbin)."""

    @abstractmethod
    async def authorize(self, request: AuthRequest) -> Decision:
        """Return the decision; never raise for a denial."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One audit log entry."""

    event: str
    tenant: str
    principal: str
    pid: int | None = None
    syscall_key: str | None = None
    kind: str | None = None
    target: str | None = None
    decision: str | None = None
    rule: str | None = None
    args: dict[str, Any] | None = None
    summary: str | None = None
    trace_id: str | None = None
    correlation_id: str | None = None


class AuditSink(ABC):
    """Appends audit records inside the caller's transaction (the policy issue hash-chains)."""

    @abstractmethod
    def append(self, session: Session, record: AuditRecord) -> None:
        """Add ``record`` to the audit log within ``session``'s transaction.

        Called on the writer's thread inside a write job: synchronous, no I/O of its own.
        """


class Pipeline:
    """The ordered stages, run as nested middleware around the call's executor."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names in {names}")
        self.stages = list(stages)

    @property
    def names(self) -> list[str]:
        """Stage names in order."""
        return [s.name for s in self.stages]

    def insert(
        self,
        stage: Stage,
        *,
        before: str | None = None,
        after: str | None = None,
        replace: str | None = None,
    ) -> None:
        """Add a stage next to a named one, or replace a named one."""
        anchors = [a for a in (before, after, replace) if a is not None]
        if len(anchors) != 1:
            raise ValueError("give exactly one of before=, after=, replace=")
        anchor = anchors[0]
        if anchor not in self.names:
            raise ValueError(f"no pipeline stage named {anchor!r}; stages are {self.names}")
        index = self.names.index(anchor)
        if replace is not None:
            self.stages[index] = stage
        elif stage.name in self.names:
            raise ValueError(f"a stage named {stage.name!r} is already in the pipeline")
        else:
            self.stages.insert(index if before is not None else index + 1, stage)

    async def run(self, call: Syscall) -> SyscallResult:
        """Pass ``call`` through every stage, then its executor."""

        async def at(index: int, current: Syscall) -> SyscallResult:
            if index == len(self.stages):
                return await current.executor(current)
            stage = self.stages[index]
            return await stage.handle(current, lambda c: at(index + 1, c))

        return await at(0, call)


ProviderSlot = Literal["authorizer", "audit_sink", "stage"]
"""What a provider builds: the authorizer or the audit sink (replacing the kernel's
defaults), or a stage that needs the kernel to be built (added at ``where``)."""


@dataclass(frozen=True, slots=True)
class Provider:
    """A pipeline collaborator (authorizer, audit sink) a plugin supplies.

    Registered through ``register_pipeline_stages``; the kernel awaits ``build(kernel)`` once
    its storage is ready and before it builds the pipeline, so the component can load its state
    (a policy, the audit chain's head) first. At most one plugin provides each slot; a provider
    that fails stops the kernel from starting, since running without it would be unsafe.
    """

    slot: ProviderSlot
    build: Callable[[Kernel], Awaitable[Authorizer | AuditSink | Stage]]
    where: dict[str, str] = field(default_factory=dict)
    """For a stage: exactly one of ``before``/``after``/``replace`` and a stage name."""
