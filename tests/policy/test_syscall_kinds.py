"""Every syscall kind is authorized by the real policy and audited, in a real kernel.

Each kind runs in its own small agent owned by ``otto`` (an operator). Allowed, the call is
journalled and audited; forbidden by a deny line on its object, it never executes and the
denial is audited with the rule. Grant intersection (owner ∩ agent) and child ≤ parent are
checked on real processes too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec, ToolSpec
from kernos.kernel.governed import ask_human, emit_event, spawn_child
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.memory import MemoryScope, memory_forget, memory_put, memory_search
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.processes import SETTLED, ProcessInfo, ProcessState
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import AuditRow
from kernos.policy.service import policy_services

EFFECTS: list[str] = []


def echo(text: str) -> str:
    EFFECTS.append(text)
    return text


class State(TypedDict, total=False):
    out: Any


def one_node(action: Any) -> Any:
    def build(spec: AgentBuild) -> Any:
        from langgraph.graph import END, START, StateGraph

        async def node(state: State) -> State:
            return {"out": await action(spec)}

        graph = StateGraph(State)
        graph.add_node("act", node)
        graph.add_edge(START, "act")
        graph.add_edge("act", END)
        return graph.compile()

    return build


async def call_tool(spec: AgentBuild) -> Any:
    return await spec.tools[0].ainvoke({"text": "hello"})


async def call_model(spec: AgentBuild) -> Any:
    return (await spec.model.ainvoke([HumanMessage(content="hi")])).content


async def ask(spec: AgentBuild) -> Any:
    return await ask_human("Go?")


async def spawn(spec: AgentBuild) -> Any:
    return await spawn_child("tool-agent")


async def emit(spec: AgentBuild) -> Any:
    return await emit_event("bin.fill", {"level": 0.9})


async def remember(spec: AgentBuild) -> Any:
    return await memory_put("notes", ["Bin 17 overflows on Mondays."], ids=["bin-17"])


async def recall(spec: AgentBuild) -> Any:
    return await memory_search("notes", "which bins are too full?", limit=1)


async def forget(spec: AgentBuild) -> Any:
    return await memory_forget("notes", ids=["bin-17"])


# kind -> (agent, the object and action the syscall is authorized on)
KINDS = {
    "tool.call": ("tool-agent", "tool:echo", "call"),
    "llm.chat": ("model-agent", "model:scripted", "call"),
    "human.ask": ("asking-agent", "approval:human", "write"),
    "process.spawn": ("spawning-agent", "agent:tool-agent", "spawn"),
    "event.emit": ("emitting-agent", "event:bin.fill", "write"),
    "memory.put": ("remembering-agent", "memory:notes", "write"),
    "memory.search": ("recalling-agent", "memory:notes", "read"),
    "memory.forget": ("forgetting-agent", "memory:notes", "write"),
}


class Agents:
    @hookimpl
    def register_tools(self, register: Any) -> None:
        register(ToolSpec(name="echo", description="Echo.", func=echo))

    @hookimpl
    def register_agents(self, register: Any) -> None:
        for name, action, tools in (
            ("tool-agent", call_tool, ("echo",)),
            ("model-agent", call_model, ()),
            ("asking-agent", ask, ()),
            ("spawning-agent", spawn, ()),
            ("emitting-agent", emit, ()),
            ("remembering-agent", remember, ()),
            ("recalling-agent", recall, ()),
            ("forgetting-agent", forget, ()),
        ):
            # The memory agents declare the shared collection they use (their manifest).
            memory = ("notes",) if action in (remember, recall, forget) else ()
            register(
                AgentSpec(
                    name=name,
                    description=name,
                    build=one_node(action),
                    tools=tools,
                    memory=memory,
                )
            )


@pytest.fixture
async def kernel(kernos_settings: Settings) -> AsyncIterator[Kernel]:
    EFFECTS.clear()
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="kinds")
    llm = FakeMessagesListChatModel(responses=[AIMessage(content="ok")])
    started = Kernel(kernos_settings, plugins=plugins, llm=llm)
    await started.start()
    await policy_services(started).engine.grant_role("otto", "operator", "default")
    try:
        yield started
    finally:
        await started.stop()


async def otto(kernel: Kernel) -> Principal:
    return await kernel.identity.ensure_principal("default", "otto", kind=PrincipalKind.PERSON)


def refusal(done: ProcessInfo) -> str:
    """The policy's refusal as the process met it: a denied tool call comes back to the graph
    as the tool's error output ("denied: ..."), so a model can react; any other denied
    syscall fails the process with ``policy_denied``."""
    if done.state is ProcessState.DONE:
        out = str((done.output or {}).get("out", ""))
        assert out.startswith("denied: "), done.output
        return out
    assert done.state is ProcessState.FAILED and done.error is not None
    assert done.error["code"] == "policy_denied", done.error
    return str(done.error["message"])


async def audit(kernel: Kernel, pid: int) -> list[AuditRow]:
    async with kernel.db.read() as session:
        return list(
            await session.scalars(
                select(AuditRow).where(AuditRow.pid == pid).order_by(AuditRow.seq)
            )
        )


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_an_allowed_syscall_is_journalled_and_audited(kernel: Kernel, kind: str) -> None:
    agent, obj, _ = KINDS[kind]
    info = await kernel.processes.spawn(agent, {}, principal=await otto(kernel))
    settled = await kernel.processes.wait(info.pid, timeout=30, until=SETTLED)
    assert settled.state in (ProcessState.DONE, ProcessState.WAITING), settled.error
    records = [r for r in await audit(kernel, info.pid) if r.kind == kind]
    events = {r.event for r in records}
    expected = (
        {"approval.requested"} if kind == "human.ask" else {"syscall.intent", "syscall.result"}
    )
    assert expected <= events, events
    assert all(r.principal == "default/otto" and r.trace_id for r in records)
    assert all(r.target == obj.split(":", 1)[1] for r in records)


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_denied_syscall_never_executes_and_is_audited(kernel: Kernel, kind: str) -> None:
    agent, obj, action = KINDS[kind]
    await policy_services(kernel).engine.add(f"p, otto, default, {obj}, {action}, deny")
    info = await kernel.processes.spawn(agent, {}, principal=await otto(kernel))
    done = await kernel.processes.wait(info.pid, timeout=30)
    assert "p, otto, default" in refusal(done)
    records = await audit(kernel, info.pid)
    [denied] = [r for r in records if r.event == "syscall.denied"]
    assert denied.kind == kind and denied.decision == "deny"
    assert f"p, otto, default, {obj}, {action}, deny" in denied.rule
    assert not [r for r in records if r.event in ("syscall.intent", "approval.requested")]
    assert EFFECTS == []
    assert await kernel.memory.count(MemoryScope(tenant="default", collection="notes")) == 0
    children = [p for p in await kernel.processes.list_processes() if p.parent_pid == info.pid]
    assert children == []


async def test_a_process_acts_with_its_owners_and_its_agents_grants(kernel: Kernel) -> None:
    # otto may call every tool; the agent, once the policy speaks of it, only reads.
    await policy_services(kernel).engine.grant_role("agent:tool-agent", "viewer", "*")
    info = await kernel.processes.spawn("tool-agent", {}, principal=await otto(kernel))
    done = await kernel.processes.wait(info.pid, timeout=30)
    assert "agent:tool-agent" in refusal(done) and EFFECTS == []
    # The agent's grant alone is not enough either: vera (a viewer) may not call the tool.
    await policy_services(kernel).engine.add("p, agent:tool-agent, *, tool:echo, call, allow")
    await policy_services(kernel).engine.grant_role("vera", "viewer", "default")
    await policy_services(kernel).engine.add("p, vera, default, agent:tool-agent, spawn, allow")
    vera = await kernel.identity.ensure_principal("default", "vera", kind=PrincipalKind.PERSON)
    info = await kernel.processes.spawn("tool-agent", {}, principal=vera)
    done = await kernel.processes.wait(info.pid, timeout=30)
    assert "vera" in refusal(done) and EFFECTS == []
    info = await kernel.processes.spawn("tool-agent", {}, principal=await otto(kernel))
    assert (await kernel.processes.wait(info.pid, timeout=30)).state is ProcessState.DONE
    assert EFFECTS == ["hello"]


async def test_a_child_gets_at_most_its_parents_grants(kernel: Kernel) -> None:
    # The parent agent may spawn the child but not call echo; the child, which may, is held
    # to its parent's grants.
    await policy_services(kernel).engine.add(
        "p, agent:spawning-agent, *, agent:tool-agent, spawn, allow"
    )
    parent = await kernel.processes.spawn("spawning-agent", {}, principal=await otto(kernel))
    await kernel.processes.wait(parent.pid, timeout=30)
    [child] = [p for p in await kernel.processes.list_processes() if p.parent_pid == parent.pid]
    child = await kernel.processes.wait(child.pid, timeout=30)
    assert "agent:spawning-agent" in refusal(child) and EFFECTS == []
