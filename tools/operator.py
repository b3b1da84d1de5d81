"""Governed tools for the operator agent: read and act on the process table.

Each tool is an ordinary ``tool.call`` syscall (authorized, audited, accounted), and what it
does inside is authorized again for the *owner* of the calling process, the person who asked.
So the operator agent never does more than its operator may: a viewer's request to kill a
process is denied however the model phrases it. Mistakes the model can correct (no such pid,
a process that is not suspended, its own pid) come back to it as the tool's error text.
``kill_process`` and ``suspend_process`` always wait for a human's approval first
(``requires_approval``): the model reads other processes' inputs and outputs, which anyone who
can start a process writes, so text there could talk it into acting on processes the operator
never named; stopping work therefore needs a person's yes. Resuming and reading do not.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.tools import ToolException
from pydantic import BaseModel, Field

from kernos.kernel.catalog import ToolSpec
from kernos.kernel.errors import Conflict, InvalidInput, KernosError, NotFound
from kernos.kernel.governed import ProcessControl, current_process_context, current_syscall
from kernos.kernel.process_records import ProcessState, Signal
from kernos.kernel.syscalls import Syscall

MAX_LISTED = 50
"""Most processes ``list_processes`` returns (the model reads every one of them)."""


class ListArgs(BaseModel):
    """Arguments of ``list_processes``."""

    state: (
        Literal["pending", "running", "waiting", "suspended", "done", "failed", "killed"] | None
    ) = Field(default=None, description="Only processes in this state.")
    agent: str | None = Field(default=None, max_length=64, description="Only this agent's.")
    limit: int = Field(default=20, ge=1, le=MAX_LISTED, description="Most processes returned.")


class PidArgs(BaseModel):
    """Arguments of the tools that act on one process."""

    pid: int = Field(ge=1, description="The process id.")
    reason: str = Field(
        default="", max_length=500, description="Why, in a sentence: shown to the approver."
    )


class DescribeArgs(BaseModel):
    """Arguments of ``describe_process``."""

    pid: int = Field(ge=1, description="The process id.")


def _caller() -> tuple[ProcessControl, Syscall]:
    context = current_process_context()
    call = current_syscall()
    if context.processes is None or call is None:
        raise KernosError("this kernel does not let tools act on processes")
    return context.processes, call


def _summary(found: dict[str, Any]) -> dict[str, Any]:
    usage = found.get("usage") or {}
    return {
        "pid": found["pid"],
        "agent": found["agent"],
        "state": found["state"],
        "waiting_on": found.get("waiting_on"),
        "owner": found.get("owner"),
        "priority": found.get("priority"),
        "parent_pid": found.get("parent_pid"),
        "created_at": found.get("created_at"),
        "tokens": int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0)),
        "cost": usage.get("cost", 0.0),
    }


async def list_processes(
    state: str | None = None, agent: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest processes of the caller's tenant (needs ``read`` on ``process:*``)."""
    processes, call = _caller()
    await processes.authorize(call.process.owner, "process:*", "read")
    found = await processes.list_processes(
        tenant=call.process.tenant,
        states=None if state is None else [ProcessState(state)],
        agent=agent,
        limit=limit,
    )
    return [_summary(info.as_dict()) for info in found]


async def describe_process(pid: int) -> dict[str, Any]:
    """One process of the caller's tenant, with its input, output and error."""
    processes, call = _caller()
    await processes.authorize(call.process.owner, f"process:{pid}", "read")
    try:
        found = (await processes.get(pid, tenant=call.process.tenant)).as_dict()
    except NotFound as exc:
        raise ToolException(str(exc)) from exc
    described = _summary(found)
    for key in ("input", "output", "error", "usage", "budgets"):
        described[key] = found.get(key)
    return described


async def _signal(pid: int, signal: Signal) -> dict[str, Any]:
    processes, call = _caller()
    if pid in (call.process.pid, call.process.parent_pid):
        raise ToolException(f"pid {pid} runs this operator request; it cannot {signal.value} it")
    try:
        info = await processes.signal(pid, signal, by=call.process.owner)
    except (NotFound, Conflict, InvalidInput) as exc:  # the model can correct these
        raise ToolException(str(exc)) from exc
    return _summary(info.as_dict())


async def suspend_process(pid: int, reason: str = "") -> dict[str, Any]:
    """Suspend a process at its next step boundary (``resume_process`` undoes it)."""
    return await _signal(pid, Signal.SUSPEND)


async def resume_process(pid: int, reason: str = "") -> dict[str, Any]:
    """Resume a suspended process."""
    return await _signal(pid, Signal.RESUME)


async def kill_process(pid: int, reason: str = "") -> dict[str, Any]:
    """Kill a process and its children (asks a human first: it cannot be undone)."""
    return await _signal(pid, Signal.KILL)


OPERATOR_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="list_processes",
        description=(
            "List the newest processes (agent runs) of this tenant with pid, agent, state, "
            "owner, tokens and cost. Filter by state or agent."
        ),
        func=list_processes,
        args_schema=ListArgs,
    ),
    ToolSpec(
        name="describe_process",
        description="Show one process in full: state, input, output, error, usage, budgets.",
        func=describe_process,
        args_schema=DescribeArgs,
    ),
    ToolSpec(
        name="suspend_process",
        description=(
            "Suspend a running or waiting process (it can be resumed later); a human "
            "approves it first."
        ),
        func=suspend_process,
        args_schema=PidArgs,
        requires_approval=True,
    ),
    ToolSpec(
        name="resume_process",
        description="Resume a suspended process.",
        func=resume_process,
        args_schema=PidArgs,
    ),
    ToolSpec(
        name="kill_process",
        description=(
            "Kill a process and all its children. Cannot be undone; a human approves it first."
        ),
        func=kill_process,
        args_schema=PidArgs,
        requires_approval=True,
    ),
)
"""The operator agent's tools, registered by ``kernos.agents.plugin``."""

__all__ = [
    "OPERATOR_TOOLS",
    "describe_process",
    "kill_process",
    "list_processes",
    "resume_process",
    "suspend_process",
]
