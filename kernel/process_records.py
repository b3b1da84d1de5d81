"""Process records: states, signals and ``ProcessInfo``, the process table's public form.

Kept apart from the manager (``kernos.kernel.processes``) so readers — the API, the CLI, the
approval desk — need not import the machinery that drives processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from kernos.kernel.catalog import Budgets
from kernos.kernel.storage.models import ProcessRow
from kernos.kernel.syscalls import Usage


class ProcessState(StrEnum):
    """Lifecycle states (``waiting`` carries what it waits on in ``waiting_on``)."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUSPENDED = "suspended"
    DONE = "done"
    FAILED = "failed"
    KILLED = "killed"


TERMINAL = frozenset({ProcessState.DONE, ProcessState.FAILED, ProcessState.KILLED})
LIVE = frozenset(
    {ProcessState.PENDING, ProcessState.RUNNING, ProcessState.WAITING, ProcessState.SUSPENDED}
)
SETTLED = TERMINAL | {ProcessState.WAITING, ProcessState.SUSPENDED}
"""States in which a process makes no progress until something outside acts."""


class Signal(StrEnum):
    """What an operator can ask of a process."""

    SUSPEND = "suspend"
    RESUME = "resume"
    KILL = "kill"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessInfo:
    """A process as the kernel reports it."""

    pid: int
    tenant: str
    owner: str
    agent: str
    agent_version: str
    parent_pid: int | None
    state: ProcessState
    waiting_on: str | None
    priority: int
    thread_id: str
    correlation_id: str
    input: Any
    output: Any
    error: Any
    budgets: Budgets
    usage: Usage
    wall_seconds: float
    steps: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "pid": self.pid,
            "tenant": self.tenant,
            "owner": self.owner,
            "agent": self.agent,
            "agent_version": self.agent_version,
            "parent_pid": self.parent_pid,
            "state": self.state.value,
            "waiting_on": self.waiting_on,
            "priority": self.priority,
            "thread_id": self.thread_id,
            "correlation_id": self.correlation_id,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "budgets": budgets_dict(self.budgets),
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "tool_calls": self.usage.tool_calls,
                "llm_calls": self.usage.llm_calls,
                "cost": self.usage.cost,
            },
            "wall_seconds": round(self.wall_seconds, 3),
            "steps": self.steps,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def budgets_dict(budgets: Budgets) -> dict[str, Any]:
    return {
        "max_tokens": budgets.max_tokens,
        "max_tool_calls": budgets.max_tool_calls,
        "max_wall_seconds": budgets.max_wall_seconds,
        "max_cost": budgets.max_cost,
    }


def budgets_from(data: dict[str, Any] | None) -> Budgets:
    return Budgets(**{k: v for k, v in (data or {}).items() if v is not None})


def process_info(row: ProcessRow, tenant: str) -> ProcessInfo:
    return ProcessInfo(
        pid=row.pid,
        tenant=tenant,
        owner=row.owner,
        agent=row.agent,
        agent_version=row.agent_version,
        parent_pid=row.parent_pid,
        state=ProcessState(row.state),
        waiting_on=row.waiting_on,
        priority=row.priority,
        thread_id=row.thread_id,
        correlation_id=row.correlation_id,
        input=row.input,
        output=row.output,
        error=row.error,
        budgets=budgets_from(row.budgets),
        usage=Usage(
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            tool_calls=row.tool_calls,
            llm_calls=row.llm_calls,
            cost=row.cost,
        ),
        wall_seconds=row.wall_seconds,
        steps=row.steps,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def jsonable_state(values: Any) -> Any:
    from kernos.kernel.governed import _jsonable

    return _jsonable(values)


__all__ = [
    "LIVE",
    "SETTLED",
    "TERMINAL",
    "ProcessInfo",
    "ProcessState",
    "Signal",
    "budgets_dict",
    "budgets_from",
    "jsonable_state",
    "process_info",
]
