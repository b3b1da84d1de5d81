"""The operator agent in a real kernel: its tools act on the process table as the process's
owner, through the real policy; killing waits for a human; the model's decisions are scripted
with langchain-core's fake chat model (the one allowed stand-in)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.governed import ask_human
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import LOCAL_ADMIN, Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.process_records import SETTLED, ProcessState
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import AuditRow
from kernos.policy.service import policy_services


class WaitState(TypedDict, total=False):
    answer: Any


def build_waiter(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def wait(state: WaitState) -> WaitState:
        return {"answer": await ask_human("Go on?")}

    graph = StateGraph(WaitState)
    graph.add_node("wait", wait)
    graph.add_edge(START, "wait")
    graph.add_edge("wait", END)
    return graph.compile()


class Waiter:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(AgentSpec(name="waiter", description="Waits for a human.", build=build_waiter))


def tool_call(name: str, call_id: str, **args: Any) -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}]
    )


@pytest.fixture
def llm() -> FakeMessagesListChatModel:
    return FakeMessagesListChatModel(responses=[AIMessage(content="unused")])


@pytest.fixture
async def kernel(
    kernos_settings: Settings, llm: FakeMessagesListChatModel
) -> AsyncIterator[Kernel]:
    plugins = PluginManager(entry_points=False)
    plugins.add(Waiter(), name="waiter")
    started = Kernel(kernos_settings, plugins=plugins, llm=llm)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def person(kernel: Kernel, name: str, role: str | None = None) -> Principal:
    if role is not None:
        await policy_services(kernel).engine.grant_role(name, role, "default")
    return await kernel.identity.ensure_principal("default", name, kind=PrincipalKind.PERSON)


async def admin(kernel: Kernel) -> Principal:
    return await kernel.identity.ensure_principal("default", LOCAL_ADMIN, kind=PrincipalKind.PERSON)


async def approve_all(kernel: Kernel, pid: int) -> None:
    """Wait for ``pid`` to ask, and approve what it asks, as the local admin."""
    waiting = await kernel.processes.wait(pid, timeout=60, until=SETTLED)
    assert waiting.state is ProcessState.WAITING, waiting
    for approval in [a for a in await kernel.processes.approvals() if a.pid == pid]:
        await kernel.processes.decide(approval.id, approved=True, by=await admin(kernel))


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def tool_results(output: dict[str, Any]) -> list[str]:
    return [m["data"]["content"] for m in output["messages"] if m["type"] == "tool"]


async def tool_audit(kernel: Kernel, pid: int) -> list[AuditRow]:
    async with kernel.db.read() as session:
        rows = await session.scalars(
            select(AuditRow).where(AuditRow.pid == pid, AuditRow.kind == "tool.call")
        )
        return list(rows)


async def test_it_lists_then_suspends_as_the_operator_who_asked(
    kernel: Kernel, llm: FakeMessagesListChatModel
) -> None:
    otto = await person(kernel, "otto", "operator")
    victim = await kernel.processes.spawn("waiter", {}, principal=otto)
    await kernel.processes.wait(victim.pid, timeout=30, until=SETTLED)
    llm.responses[:] = [
        tool_call("list_processes", "c1", state="waiting"),
        tool_call("suspend_process", "c2", pid=victim.pid, reason="the operator asked"),
        AIMessage(content=f"Suspended pid {victim.pid}."),
    ]
    op = await kernel.processes.spawn("operator", ask("pause the waiter"), principal=otto)
    await approve_all(kernel, op.pid)  # suspending stops work: a person says yes first
    done = await kernel.processes.wait(op.pid, timeout=60)
    assert done.state is ProcessState.DONE, done.error
    listed, suspended = tool_results(done.output or {})
    assert f'"pid": {victim.pid}' in listed and '"agent": "waiter"' in listed
    assert '"state": "suspended"' in suspended
    assert (await kernel.processes.get(victim.pid)).state is ProcessState.SUSPENDED
    records = await tool_audit(kernel, op.pid)
    targets = {r.target for r in records if r.event == "syscall.result"}
    assert targets == {"list_processes", "suspend_process"}
    assert all(r.principal == "default/otto" for r in records)


async def test_kill_is_proposed_and_runs_only_after_approval(
    kernel: Kernel, llm: FakeMessagesListChatModel
) -> None:
    otto = await person(kernel, "otto", "operator")
    victim = await kernel.processes.spawn("waiter", {}, principal=otto)
    await kernel.processes.wait(victim.pid, timeout=30, until=SETTLED)
    llm.responses[:] = [
        tool_call("kill_process", "k1", pid=victim.pid, reason="stuck for an hour"),
        AIMessage(content=f"Killed pid {victim.pid}."),
    ]
    op = await kernel.processes.spawn("operator", ask("kill the stuck waiter"), principal=otto)
    waiting = await kernel.processes.wait(op.pid, timeout=60, until=SETTLED)
    assert waiting.state is ProcessState.WAITING
    [approval] = [a for a in await kernel.processes.approvals() if a.pid == op.pid]
    assert "kill_process" in approval.question and str(victim.pid) in approval.question
    assert (await kernel.processes.get(victim.pid)).state is ProcessState.WAITING  # not yet
    await kernel.processes.decide(approval.id, approved=True, by=await admin(kernel))
    done = await kernel.processes.wait(op.pid, timeout=60)
    assert done.state is ProcessState.DONE, done.error
    assert (await kernel.processes.get(victim.pid)).state is ProcessState.KILLED
    assert done.output is not None
    assert done.output["messages"][-1]["data"]["content"] == f"Killed pid {victim.pid}."


async def test_a_denied_kill_never_runs(kernel: Kernel, llm: FakeMessagesListChatModel) -> None:
    otto = await person(kernel, "otto", "operator")
    victim = await kernel.processes.spawn("waiter", {}, principal=otto)
    await kernel.processes.wait(victim.pid, timeout=30, until=SETTLED)
    llm.responses[:] = [
        tool_call("kill_process", "k1", pid=victim.pid),
        AIMessage(content="The kill was denied."),
    ]
    op = await kernel.processes.spawn("operator", ask("kill it"), principal=otto)
    await kernel.processes.wait(op.pid, timeout=60, until=SETTLED)
    [approval] = [a for a in await kernel.processes.approvals() if a.pid == op.pid]
    await kernel.processes.decide(approval.id, approved=False, by=await admin(kernel))
    done = await kernel.processes.wait(op.pid, timeout=60)
    assert done.state is ProcessState.DONE, done.error
    assert (await kernel.processes.get(victim.pid)).state is ProcessState.WAITING
    [result] = tool_results(done.output or {})
    assert "denied" in result.lower()


async def test_the_agent_never_does_more_than_its_owner_may(
    kernel: Kernel, llm: FakeMessagesListChatModel
) -> None:
    # A helper may run the operator agent and call tools, but not signal processes: the
    # tool call is allowed, the suspend inside it is not.
    engine = policy_services(kernel).engine
    for line in (
        "p, role:helper, *, agent:operator, spawn, allow",
        "p, role:helper, *, tool:*, call, allow",
        "p, role:helper, *, model:*, call, allow",
        "p, role:helper, *, process:*, read, allow",
        "p, role:helper, *, approval:*, write, allow",
    ):
        await engine.add(line)
    otto = await person(kernel, "otto", "operator")
    victim = await kernel.processes.spawn("waiter", {}, principal=otto)
    await kernel.processes.wait(victim.pid, timeout=30, until=SETTLED)
    hal = await person(kernel, "hal", "helper")
    llm.responses[:] = [
        tool_call("suspend_process", "s1", pid=victim.pid),
        AIMessage(content="I may not do that."),
    ]
    op = await kernel.processes.spawn("operator", ask("suspend the waiter"), principal=hal)
    await approve_all(kernel, op.pid)  # even approved, the suspend is hal's to make
    done = await kernel.processes.wait(op.pid, timeout=60)
    assert done.state is ProcessState.DONE, done.error
    [result] = tool_results(done.output or {})
    assert result.startswith("denied: ") and f"process:{victim.pid}" in result
    assert (await kernel.processes.get(victim.pid)).state is ProcessState.WAITING
    async with kernel.db.read() as session:
        denials = list(
            await session.scalars(
                select(AuditRow).where(
                    AuditRow.event.like("%denied%"), AuditRow.principal == "default/hal"
                )
            )
        )
    assert denials, "the refused signal is audited"


async def test_mistakes_come_back_to_the_model(
    kernel: Kernel, llm: FakeMessagesListChatModel
) -> None:
    otto = await person(kernel, "otto", "operator")
    llm.responses[:] = [
        tool_call("resume_process", "r1", pid=999),
        tool_call("resume_process", "r2", pid=1),
        AIMessage(content="Nothing to do."),
    ]
    op = await kernel.processes.spawn("operator", ask("resume 999"), principal=otto)
    assert op.pid == 1  # so the second call names the operator process itself
    done = await kernel.processes.wait(op.pid, timeout=60)
    assert done.state is ProcessState.DONE, done.error
    missing, itself = tool_results(done.output or {})
    assert "no process 999" in missing
    assert "cannot resume it" in itself
    assert "runs this operator request" in itself


async def test_bad_input_is_refused_before_a_process_exists(kernel: Kernel) -> None:
    from kernos.kernel.errors import InvalidInput

    otto = await person(kernel, "otto", "operator")
    with pytest.raises(InvalidInput, match="messages"):
        await kernel.processes.spawn("operator", {"messages": []}, principal=otto)
