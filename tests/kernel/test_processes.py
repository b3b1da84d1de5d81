"""Processes through the governed pipeline: a LangGraph agent, approvals, budgets, signals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec, Budgets, ToolSpec
from kernos.kernel.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from kernos.kernel.governed import ask_human, emit_event, spawn_child
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.processes import SETTLED, ProcessState, Signal
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import AuditRow, SyscallRow, TenantUsageRow
from kernos.kernel.syscalls import Proceed, Stage, Syscall, SyscallResult
from kernos.kernel.telemetry import Telemetry
from kernos.policy.service import policy_services

ADMIN = Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)
EFFECTS: list[str] = []


def add(a: int, b: int, idempotency_key: str) -> int:
    EFFECTS.append(f"add:{idempotency_key}")
    return a + b


async def dispatch(truck: str) -> str:
    EFFECTS.append(f"dispatch:{truck}")
    return f"{truck} dispatched"


class AskState(TypedDict, total=False):
    answers: list[Any]
    sum: int


def build_asker(build: AgentBuild) -> Any:
    """One node: a tool call (an effect), then two questions to a human."""
    from langgraph.graph import END, START, StateGraph

    tool = next(t for t in build.tools if t.name == "add")

    async def ask_twice(state: AskState) -> AskState:
        total = await tool.ainvoke({"a": 2, "b": 3})
        first = await ask_human("Which depot?")
        second = await ask_human("How many trucks?")
        return {"sum": total, "answers": [first["value"], second["value"]]}

    graph = StateGraph(AskState)
    graph.add_node("ask_twice", ask_twice)
    graph.add_edge(START, "ask_twice")
    graph.add_edge("ask_twice", END)
    return graph.compile()


GATE: dict[str, asyncio.Event] = {}


class StepState(TypedDict, total=False):
    trail: list[str]


def build_stepper(build: AgentBuild) -> Any:
    """Three nodes; the first waits on a gate the test opens."""
    from langgraph.graph import END, START, StateGraph

    async def first(state: StepState) -> StepState:
        GATE["entered"].set()
        await GATE["open"].wait()
        EFFECTS.append("first")
        return {"trail": [*state.get("trail", []), "first"]}

    async def second(state: StepState) -> StepState:
        EFFECTS.append("second")
        return {"trail": [*state["trail"], "second"]}

    async def third(state: StepState) -> StepState:
        EFFECTS.append("third")
        return {"trail": [*state["trail"], "third"]}

    graph = StateGraph(StepState)
    graph.add_node("first", first)
    graph.add_node("second", second)
    graph.add_node("third", third)
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    graph.add_edge("second", "third")
    graph.add_edge("third", END)
    return graph.compile()


class ParentState(TypedDict, total=False):
    child: int
    event_id: str


def build_parent(build: AgentBuild) -> Any:
    """Emits an event and starts a child, both as syscalls."""
    from langgraph.graph import END, START, StateGraph

    async def work(state: ParentState) -> ParentState:
        event_id = await emit_event("city.truck.dispatched", {"truck": "t7"})
        child = await spawn_child("stepper", {})
        return {"child": child, "event_id": event_id}

    graph = StateGraph(ParentState)
    graph.add_node("work", work)
    graph.add_edge(START, "work")
    graph.add_edge("work", END)
    return graph.compile()


def build_react(build: AgentBuild) -> Any:
    from langgraph.prebuilt import create_react_agent

    return create_react_agent(build.model, build.tools)


class Question(BaseModel):
    question: str


class Agents:
    @hookimpl
    def register_tools(self, register):
        register(ToolSpec(name="add", description="Add two integers.", func=add))
        register(
            ToolSpec(
                name="dispatch",
                description="Send a truck.",
                func=dispatch,
                requires_approval=True,
            )
        )

    @hookimpl
    def register_agents(self, register):
        register(
            AgentSpec(
                name="calc",
                description="Adds numbers with a tool.",
                build=build_react,
                tools=("add",),
                input_schema=None,
            )
        )
        register(
            AgentSpec(
                name="strict",
                description="Needs a question.",
                build=build_react,
                tools=("add",),
                input_schema=Question,
            )
        )
        register(
            AgentSpec(
                name="dispatcher",
                description="Dispatches trucks after approval.",
                build=build_react,
                tools=("dispatch",),
            )
        )
        register(AgentSpec(name="stepper", description="Three steps.", build=build_stepper))
        register(AgentSpec(name="parent", description="Emits, spawns.", build=build_parent))
        register(
            AgentSpec(
                name="asker",
                description="Asks a human twice.",
                build=build_asker,
                tools=("add",),
            )
        )


def tool_call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def scripted(*replies: AIMessage) -> FakeMessagesListChatModel:
    return FakeMessagesListChatModel(responses=list(replies))


@pytest.fixture(autouse=True)
def _clear_effects() -> None:
    EFFECTS.clear()


SPANS = InMemorySpanExporter()


async def start_kernel(settings: Settings, llm: Any = None) -> Kernel:
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="test-agents")
    telemetry = Telemetry(span_processors=[SimpleSpanProcessor(SPANS)])
    kernel = Kernel(settings, plugins=plugins, llm=llm, telemetry=telemetry)
    await kernel.start()
    return kernel


@pytest.fixture
async def kernel_factory(kernos_settings: Settings) -> AsyncIterator[Any]:
    started: list[Kernel] = []

    async def make(llm: Any = None) -> Kernel:
        kernel = await start_kernel(kernos_settings, llm)
        started.append(kernel)
        return kernel

    yield make
    for kernel in started:
        await kernel.stop()


async def _journal(kernel: Kernel, pid: int) -> list[SyscallRow]:
    async with kernel.db.read() as session:
        return list(await session.scalars(select(SyscallRow).where(SyscallRow.pid == pid)))


async def _audit(kernel: Kernel, pid: int) -> list[AuditRow]:
    async with kernel.db.read() as session:
        rows = await session.scalars(
            select(AuditRow).where(AuditRow.pid == pid).order_by(AuditRow.seq)
        )
        return list(rows)


async def test_a_langgraph_tool_calling_agent_runs_governed(kernel_factory) -> None:
    llm = scripted(
        AIMessage(content="", tool_calls=[tool_call("add", {"a": 20, "b": 22}, "call-1")]),
        AIMessage(
            content="The sum is 42.",
            usage_metadata={"input_tokens": 30, "output_tokens": 6, "total_tokens": 36},
        ),
    )
    kernel = await kernel_factory(llm)
    SPANS.clear()
    info = await kernel.processes.spawn("calc", {"messages": [("user", "20+22?")]}, principal=ADMIN)
    assert info.state is ProcessState.PENDING
    done = await kernel.processes.wait(info.pid, timeout=30)
    assert done.state is ProcessState.DONE, done.error
    assert done.output["messages"][-1]["data"]["content"] == "The sum is 42."
    assert done.usage.llm_calls == 2 and done.usage.tool_calls == 1
    assert done.usage.output_tokens == 6
    assert done.steps >= 3
    journal = await _journal(kernel, info.pid)
    assert sorted((j.kind, j.status) for j in journal) == [
        ("llm.chat", "done"),
        ("llm.chat", "done"),
        ("tool.call", "done"),
    ]
    tool_row = next(j for j in journal if j.kind == "tool.call")
    assert tool_row.key.endswith("/call-1") and tool_row.result == 42
    assert [f"add:{tool_row.key}"] == EFFECTS  # the tool got the syscall key as idempotency key
    events = [a.event for a in await _audit(kernel, info.pid)]
    assert events.count("syscall.intent") == 3 and events.count("syscall.result") == 3
    assert events[0] == "process.spawned" and events[-1] == "process.done"
    assert all(a.trace_id for a in await _audit(kernel, info.pid) if a.event.startswith("syscall"))
    async with kernel.db.read() as session:
        usage = (await session.scalars(select(TenantUsageRow))).one()
    assert (usage.llm_calls, usage.tool_calls, usage.output_tokens) == (2, 1, 6)
    # Each syscall has its span, with the GenAI span of the call inside it.
    spans = SPANS.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("kernos.syscall llm.chat") == 2 and names.count("chat scripted") == 2
    assert names.count("kernos.syscall tool.call") == 1 and names.count("execute_tool add") == 1
    tool_span = next(s for s in spans if s.name == "execute_tool add")
    parent = next(s for s in spans if s.name == "kernos.syscall tool.call")
    assert tool_span.parent is not None and tool_span.parent.span_id == parent.context.span_id
    trace_ids = {format(parent.context.trace_id, "032x")}
    audited = {a.trace_id for a in await _audit(kernel, info.pid) if a.target == "add"}
    assert audited == trace_ids  # the audit records carry the syscall's trace id


async def test_a_principal_without_grants_is_denied_and_audited(kernel_factory) -> None:
    kernel = await kernel_factory(scripted(AIMessage(content="never")))
    alice = await kernel.identity.ensure_principal("default", "alice", kind=PrincipalKind.PERSON)
    with pytest.raises(PolicyDenied, match="may not spawn agent:calc"):
        await kernel.processes.spawn("calc", {"messages": [("user", "hi")]}, principal=alice)
    # Allowed to start it, but not to call the model: the process fails at its first syscall.
    await policy_services(kernel).engine.add("p, alice, default, agent:calc, spawn, allow")
    info = await kernel.processes.spawn("calc", {"messages": [("user", "hi")]}, principal=alice)
    done = await kernel.processes.wait(info.pid, timeout=30)
    assert done.state is ProcessState.FAILED
    assert done.error["code"] == "policy_denied"
    denied = [a for a in await _audit(kernel, info.pid) if a.event == "syscall.denied"]
    assert len(denied) == 1 and denied[0].decision == "deny"
    assert denied[0].target == "scripted" and "deny-by-default" in denied[0].rule
    async with kernel.db.read() as session:
        refused = list(
            await session.scalars(
                select(AuditRow.target).where(
                    AuditRow.event == "operator.denied", AuditRow.principal == "default/alice"
                )
            )
        )
    assert refused == ["agent:calc"]


async def test_an_exhausted_budget_stops_the_process_audited(kernel_factory) -> None:
    llm = scripted(
        AIMessage(content="", tool_calls=[tool_call("add", {"a": 1, "b": 1}, "c1")]),
        AIMessage(content="", tool_calls=[tool_call("add", {"a": 2, "b": 2}, "c2")]),
        AIMessage(content="done"),
    )
    kernel = await kernel_factory(llm)
    info = await kernel.processes.spawn(
        "calc", {"messages": [("user", "go")]}, principal=ADMIN, budgets=Budgets(max_tool_calls=1)
    )
    done = await kernel.processes.wait(info.pid, timeout=30)
    assert done.state is ProcessState.FAILED
    assert done.error["code"] == "budget_exceeded"
    assert "1 of 1 tool calls" in done.error["message"]
    assert done.usage.tool_calls == 1
    assert len(EFFECTS) == 1  # the second call was refused before it ran
    denied = [a for a in await _audit(kernel, info.pid) if a.event == "syscall.denied"]
    assert [d.rule for d in denied] == ["budget:max_tool_calls"]


async def test_two_questions_in_one_node_resume_without_repeating_effects(
    kernel_factory,
) -> None:
    kernel = await kernel_factory()
    info = await kernel.processes.spawn("asker", {}, principal=ADMIN)
    waiting = await kernel.processes.wait(info.pid, timeout=30, until=SETTLED)
    assert (waiting.state, waiting.waiting_on) == (ProcessState.WAITING, "human")
    [first] = await kernel.processes.approvals()
    assert first.question == "Which depot?" and first.kind == "human.ask"
    await kernel.processes.decide(first.id, approved=True, value="north", by=ADMIN)

    async def second_question() -> Any:
        while True:
            pending = await kernel.processes.approvals()
            if pending:
                return pending[0]
            await asyncio.sleep(0.02)

    second = await asyncio.wait_for(second_question(), timeout=30)
    assert second.question == "How many trucks?"
    await kernel.processes.decide(second.id, approved=True, value=3, by=ADMIN, comment="ok")
    done = await kernel.processes.wait(info.pid, timeout=30)
    assert done.state is ProcessState.DONE, done.error
    assert done.output == {"sum": 5, "answers": ["north", 3]}
    assert len(EFFECTS) == 1  # the add ran once across three runs of the node
    decided = await kernel.processes.approvals(status=None)
    assert [a.status for a in decided] == ["approved", "approved"]


async def test_two_parallel_approvals_in_one_step(kernel_factory) -> None:
    llm = scripted(
        AIMessage(
            content="",
            tool_calls=[
                tool_call("dispatch", {"truck": "t1"}, "d1"),
                tool_call("dispatch", {"truck": "t2"}, "d2"),
            ],
        ),
        AIMessage(content="both handled"),
    )
    kernel = await kernel_factory(llm)
    info = await kernel.processes.spawn(
        "dispatcher", {"messages": [("user", "go")]}, principal=ADMIN
    )
    waiting = await kernel.processes.wait(info.pid, timeout=30, until=SETTLED)
    assert waiting.state is ProcessState.WAITING
    pending = await kernel.processes.approvals()
    assert sorted(a.proposed["args"]["truck"] for a in pending) == ["t1", "t2"]
    by_truck = {a.proposed["args"]["truck"]: a for a in pending}
    await kernel.processes.decide(by_truck["t1"].id, approved=True, by=ADMIN)
    again = await kernel.processes.wait(info.pid, timeout=30, until=SETTLED)
    assert again.state is ProcessState.WAITING
    await kernel.processes.decide(by_truck["t2"].id, approved=False, by=ADMIN, comment="no")
    done = await kernel.processes.wait(info.pid, timeout=30)
    assert done.state is ProcessState.DONE, done.error
    assert EFFECTS == ["dispatch:t1"]  # approved once, run once; the denied one never ran
    contents = [m["data"]["content"] for m in done.output["messages"] if m["type"] == "tool"]
    assert "t1 dispatched" in contents
    assert any("not approved" in c and "no" in c for c in contents)


async def test_kill_cascades_and_suspend_resume(kernel_factory) -> None:
    kernel = await kernel_factory()
    parent = await kernel.processes.spawn("asker", {}, principal=ADMIN)
    child = await kernel.processes.spawn("asker", {}, principal=ADMIN, parent_pid=parent.pid)
    grandchild = await kernel.processes.spawn("asker", {}, principal=ADMIN, parent_pid=child.pid)
    for pid in (parent.pid, child.pid, grandchild.pid):
        await kernel.processes.wait(pid, timeout=30, until=SETTLED)
    assert child.correlation_id == parent.correlation_id
    suspended = await kernel.processes.signal(child.pid, Signal.SUSPEND)
    assert suspended.state is ProcessState.SUSPENDED
    with pytest.raises(Conflict, match="not suspended"):
        await kernel.processes.signal(parent.pid, Signal.RESUME)
    resumed = await kernel.processes.signal(child.pid, Signal.RESUME)
    assert resumed.state in (ProcessState.PENDING, ProcessState.RUNNING, ProcessState.WAITING)
    await kernel.processes.wait(child.pid, timeout=30, until=SETTLED)
    await kernel.processes.signal(parent.pid, Signal.KILL)
    for pid in (parent.pid, child.pid, grandchild.pid):
        assert (await kernel.processes.get(pid)).state is ProcessState.KILLED
    with pytest.raises(Conflict, match="parent process"):
        await kernel.processes.spawn("asker", {}, principal=ADMIN, parent_pid=parent.pid)


async def test_suspend_takes_effect_before_the_next_step(kernel_factory) -> None:
    GATE["entered"], GATE["open"] = asyncio.Event(), asyncio.Event()
    kernel = await kernel_factory()
    info = await kernel.processes.spawn("stepper", {}, principal=ADMIN)
    await asyncio.wait_for(GATE["entered"].wait(), timeout=30)
    running = await kernel.processes.signal(info.pid, Signal.SUSPEND)
    assert running.state is ProcessState.RUNNING  # takes effect at the step boundary
    GATE["open"].set()
    suspended = await kernel.processes.wait(info.pid, timeout=30, until=SETTLED)
    assert suspended.state is ProcessState.SUSPENDED
    assert EFFECTS == ["first"]  # the next step did not start
    await kernel.processes.signal(info.pid, Signal.RESUME)
    done = await kernel.processes.wait(info.pid, timeout=30)
    assert done.state is ProcessState.DONE, done.error
    assert done.output == {"trail": ["first", "second", "third"]}
    assert EFFECTS == ["first", "second", "third"]  # resume did not redo the first step


async def test_kill_stops_a_running_process_at_the_next_step(kernel_factory) -> None:
    GATE["entered"], GATE["open"] = asyncio.Event(), asyncio.Event()
    kernel = await kernel_factory()
    info = await kernel.processes.spawn("stepper", {}, principal=ADMIN)
    await asyncio.wait_for(GATE["entered"].wait(), timeout=30)
    await kernel.processes.signal(info.pid, Signal.KILL)
    GATE["open"].set()
    killed = await kernel.processes.wait(info.pid, timeout=30)
    assert killed.state is ProcessState.KILLED
    assert EFFECTS == ["first"]
    with pytest.raises(Conflict, match="only a live process"):
        await kernel.processes.signal(info.pid, Signal.SUSPEND)


async def test_bad_input_is_refused_and_nothing_is_written(kernel_factory) -> None:
    kernel = await kernel_factory()
    with pytest.raises(NotFound, match="no agent named 'nope'.*asker"):
        await kernel.processes.spawn("nope", {}, principal=ADMIN)
    with pytest.raises(InvalidInput, match="question: Field required"):
        await kernel.processes.spawn("strict", {"q": 1}, principal=ADMIN)
    with pytest.raises(NotFound, match="no process 999"):
        await kernel.processes.get(999)
    with pytest.raises(NotFound, match="no process 999"):
        await kernel.processes.signal(999, Signal.KILL)
    assert await kernel.processes.list_processes() == []
    with pytest.raises(NotFound, match="no approval"):
        await kernel.processes.decide("missing", approved=True, by=ADMIN)


async def test_a_waiting_process_survives_a_restart(kernos_settings: Settings) -> None:
    first = await start_kernel(kernos_settings)
    info = await first.processes.spawn("asker", {}, principal=ADMIN)
    await first.processes.wait(info.pid, timeout=30, until=SETTLED)
    await first.stop()
    second = await start_kernel(kernos_settings)
    try:
        still = await second.processes.get(info.pid)
        assert (still.state, still.waiting_on) == (ProcessState.WAITING, "human")
        [approval] = await second.processes.approvals()
        await second.processes.decide(approval.id, approved=True, value="south", by=ADMIN)
        waiting = await second.processes.wait(info.pid, timeout=30, until=SETTLED)
        [approval2] = [a for a in await second.processes.approvals()]
        await second.processes.decide(approval2.id, approved=True, value=1, by=ADMIN)
        done = await second.processes.wait(info.pid, timeout=30)
        assert waiting.state is ProcessState.WAITING
        assert done.state is ProcessState.DONE and done.output["answers"] == ["south", 1]
        assert len(EFFECTS) == 1
    finally:
        await second.stop()


class SeenStage(Stage):
    name = "seen"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def handle(self, call: Syscall, proceed: Proceed) -> SyscallResult:
        self.seen.append((call.kind.value, call.target))
        return await proceed(call)


class OpenDoor(Stage):
    """Replaces the built-in authorize stage (what the policy plugin does with Casbin)."""

    name = "authorize"

    async def handle(self, call: Syscall, proceed: Proceed) -> SyscallResult:
        call.attributes["rule"] = "test-open-door"
        return await proceed(call)


class StagePlugin:
    def __init__(self, seen: SeenStage) -> None:
        self.seen = seen

    @hookimpl
    def register_pipeline_stages(self, register):
        register(self.seen, before="journal")
        register(OpenDoor(), replace="authorize")


async def test_plugins_add_and_replace_pipeline_stages(kernos_settings: Settings) -> None:
    seen = SeenStage()
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="test-agents")
    plugins.add(StagePlugin(seen), name="stage-plugin")
    llm = scripted(
        AIMessage(content="", tool_calls=[tool_call("add", {"a": 1, "b": 2}, "x1")]),
        AIMessage(content="3"),
    )
    kernel = Kernel(kernos_settings, plugins=plugins, llm=llm)
    async with kernel:
        assert kernel.pipeline.names == [
            "trace",
            "replay",
            "authorize",
            "budget",
            "approval",
            "seen",
            "journal",
            "guard",
            "execute",
        ]
        bob = await kernel.identity.ensure_principal("default", "bob", kind=PrincipalKind.PERSON)
        # The policy lets bob start calc, nothing more: its syscalls pass by the replaced stage.
        await policy_services(kernel).engine.add("p, bob, default, agent:calc, spawn, allow")
        info = await kernel.processes.spawn("calc", {"messages": [("user", "1+2")]}, principal=bob)
        done = await kernel.processes.wait(info.pid, timeout=30)
        assert done.state is ProcessState.DONE, done.error
        intents = [a for a in await _audit(kernel, info.pid) if a.event == "syscall.intent"]
        assert {a.rule for a in intents} == {"test-open-door"}
    assert seen.seen == [("llm.chat", "scripted"), ("tool.call", "add"), ("llm.chat", "scripted")]


async def test_a_spawn_key_gives_one_process(kernel_factory) -> None:
    kernel = await kernel_factory()
    first, second = await asyncio.gather(
        kernel.processes.spawn("asker", {}, principal=ADMIN, idempotency_key="req-1"),
        kernel.processes.spawn("asker", {}, principal=ADMIN, idempotency_key="req-1"),
    )
    assert first.pid == second.pid
    again = await kernel.processes.spawn("asker", {}, principal=ADMIN, idempotency_key="req-1")
    assert again.pid == first.pid
    assert len(await kernel.processes.list_processes()) == 1


async def test_a_process_emits_events_and_spawns_children_as_syscalls(kernel_factory) -> None:
    GATE["entered"], GATE["open"] = asyncio.Event(), asyncio.Event()
    GATE["open"].set()
    kernel = await kernel_factory()
    parent = await kernel.processes.spawn("parent", {}, principal=ADMIN)
    done = await kernel.processes.wait(parent.pid, timeout=30)
    assert done.state is ProcessState.DONE, done.error
    child = await kernel.processes.wait(done.output["child"], timeout=30)
    assert (child.parent_pid, child.correlation_id) == (parent.pid, parent.correlation_id)
    assert child.state is ProcessState.DONE
    journal = {j.kind: j for j in await _journal(kernel, parent.pid)}
    assert journal["process.spawn"].result == {"pid": child.pid}
    assert journal["event.emit"].result == {"event_id": done.output["event_id"]}
    async with kernel.db.read() as session:
        from kernos.kernel.storage.models import EventRow

        events = list(await session.scalars(select(EventRow)))
    assert [(e.topic, e.event_id) for e in events] == [
        ("city.truck.dispatched", done.output["event_id"])
    ]


async def test_processes_queue_for_a_run_slot_and_signals_reach_them(
    kernos_settings: Settings,
) -> None:
    GATE["entered"], GATE["open"] = asyncio.Event(), asyncio.Event()
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="test-agents")
    settings = kernos_settings.model_copy(update={"max_running_processes": 1})
    async with Kernel(settings, plugins=plugins) as kernel:
        first = await kernel.processes.spawn("stepper", {}, principal=ADMIN)
        await asyncio.wait_for(GATE["entered"].wait(), timeout=30)
        queued = await kernel.processes.spawn("asker", {}, principal=ADMIN)
        also = await kernel.processes.spawn("asker", {}, principal=ADMIN)
        assert (await kernel.processes.get(queued.pid)).state is ProcessState.PENDING
        await kernel.processes.signal(queued.pid, Signal.KILL)
        await kernel.processes.signal(also.pid, Signal.SUSPEND)
        GATE["open"].set()
        assert (await kernel.processes.wait(first.pid, timeout=30)).state is ProcessState.DONE
        assert (await kernel.processes.wait(queued.pid, timeout=30)).state is ProcessState.KILLED
        suspended = await kernel.processes.wait(also.pid, timeout=30, until=SETTLED)
        assert suspended.state is ProcessState.SUSPENDED
        assert EFFECTS == ["first", "second", "third"]  # the killed one never ran its add
