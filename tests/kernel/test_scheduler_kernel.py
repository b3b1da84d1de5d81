"""``KernelChatModel`` through the LLM scheduler, in a real kernel's pipeline: tool calls in
the answer, usage and cost charged to the process, token budgets checked before sending."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec, Budgets, ToolSpec
from kernos.kernel.clock import SystemClock
from kernos.kernel.governed import KernelChatModel
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.llm import BackendConfig, ChatChunk, ChatRequest, ChatResponse
from kernos.kernel.llm_bridge import ai_message, chat_request, message_chunk
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.processes import ProcessState
from kernos.kernel.scheduling import LLMScheduler
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import AuditRow
from kernos.kernel.telemetry import Telemetry

from .scheduler_standin import StandIn

ADMIN = Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)


def add(a: int, b: int) -> int:
    return a + b


class RecordingScheduler(LLMScheduler):
    """The real scheduler, remembering where each call came from."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[dict[str, Any]] = []

    async def chat(self, request: ChatRequest, **where: Any) -> ChatResponse:  # type: ignore[override]
        self.seen.append(where)
        return await super().chat(request, **where)


class Agents:
    def __init__(self, model: KernelChatModel) -> None:
        self.model = model

    @hookimpl
    def register_tools(self, register):
        register(ToolSpec(name="add", description="Add two integers.", func=add))

    @hookimpl
    def register_agents(self, register):
        model = self.model

        def build(agent: AgentBuild) -> Any:
            from langgraph.prebuilt import create_react_agent

            return create_react_agent(model, agent.tools)

        register(AgentSpec(name="calc", description="Adds.", build=build, tools=("add",)))


TOOL_CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {
            "id": "call-1",
            "type": "function",
            "function": {"name": "add", "arguments": '{"a": 20, "b": 22}'},
        }
    ],
}


async def start(settings: Settings, model: KernelChatModel) -> Kernel:
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(model), name="test-agents")
    kernel = Kernel(settings, plugins=plugins)
    await kernel.start()
    return kernel


async def test_an_agent_calls_tools_through_the_scheduler_and_is_charged(
    kernos_settings: Settings,
) -> None:
    backend = StandIn(
        BackendConfig(name="main", model="m-1", price_in_per_1k=1.0, price_out_per_1k=2.0),
        script=[TOOL_CALL, {"role": "assistant", "content": "The sum is 42."}],
    )
    reader = InMemoryMetricReader()
    telemetry = Telemetry(metric_readers=[reader])
    sched = RecordingScheduler({"main": backend}, clock=SystemClock(), telemetry=telemetry)
    kernel = await start(kernos_settings, KernelChatModel(scheduler=sched, backend="main"))
    try:
        info = await kernel.processes.spawn(
            "calc", {"messages": [("user", "20+22?")]}, principal=ADMIN, priority=3
        )
        done = await kernel.processes.wait(info.pid, timeout=30)
        assert done.state is ProcessState.DONE, done.error
        assert done.output["messages"][-1]["data"]["content"] == "The sum is 42."
        # The model saw the tool, and its second request carried the tool's result.
        first, second = backend.requests
        assert first.tools and first.tools[0]["function"]["name"] == "add"
        tool_reply = second.messages[-1]
        assert (tool_reply["role"], tool_reply["tool_call_id"], tool_reply["content"]) == (
            "tool",
            "call-1",
            "42",
        )
        assert (
            sched.seen
            == [{"backend": "main", "priority": 3, "tenant": "default", "pid": info.pid}] * 2
        )
        assert (done.usage.llm_calls, done.usage.tool_calls) == (2, 1)
        assert (done.usage.input_tokens, done.usage.output_tokens) == (20, 10)
        assert done.usage.cost == pytest.approx(2 * (10 * 1.0 + 5 * 2.0) / 1000)
        data = reader.get_metrics_data()
        assert data is not None
        outputs = [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == "gen_ai.client.token.usage"
            for point in metric.data.data_points
            if point.attributes.get("gen_ai.token.type") == "output"
        ]
        # Counted once, by the scheduler (with its backend), not again by the execute stage.
        assert [(p.attributes.get("kernos.backend"), p.sum) for p in outputs] == [("main", 10)]
    finally:
        await kernel.stop()
        telemetry.shutdown()


async def test_a_request_beyond_the_token_budget_is_refused_before_it_is_sent(
    kernos_settings: Settings,
) -> None:
    backend = StandIn(BackendConfig(name="main", model="m-1"))
    sched = LLMScheduler({"main": backend}, clock=SystemClock())
    model = KernelChatModel(scheduler=sched, backend="main", max_tokens=500)
    kernel = await start(kernos_settings, model)
    try:
        info = await kernel.processes.spawn(
            "calc", {"messages": [("user", "hi")]}, principal=ADMIN, budgets=Budgets(max_tokens=100)
        )
        done = await kernel.processes.wait(info.pid, timeout=30)
        assert done.state is ProcessState.FAILED
        assert done.error["code"] == "budget_exceeded"
        assert "asks for up to 500 tokens; 100 of 100 remain" in done.error["message"]
        assert backend.calls == []  # never sent
        async with kernel.db.read() as session:
            rules = await session.scalars(
                select(AuditRow.rule).where(AuditRow.pid == info.pid, AuditRow.decision == "deny")
            )
            assert list(rules) == ["budget:max_tokens"]
    finally:
        await kernel.stop()


async def test_without_max_tokens_the_reply_is_held_to_the_budget_left(
    kernos_settings: Settings,
) -> None:
    backend = StandIn(BackendConfig(name="main", model="m-1"))
    sched = LLMScheduler({"main": backend}, clock=SystemClock())
    kernel = await start(kernos_settings, KernelChatModel(scheduler=sched, backend="main"))
    try:
        info = await kernel.processes.spawn(
            "calc", {"messages": [("user", "hi")]}, principal=ADMIN, budgets=Budgets(max_tokens=80)
        )
        done = await kernel.processes.wait(info.pid, timeout=30)
        assert done.state is ProcessState.DONE, done.error
        assert [r.max_tokens for r in backend.requests] == [80]
        assert done.usage.tokens == 15
    finally:
        await kernel.stop()


class Collect(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


async def test_streaming_replies_reach_callbacks_chunk_by_chunk(kernos_settings: Settings) -> None:
    backend = StandIn(BackendConfig(name="main", model="m-1"))
    sched = LLMScheduler({"main": backend}, clock=SystemClock())
    collect = Collect()
    model = KernelChatModel(scheduler=sched, backend="main", streaming=True, callbacks=[collect])
    kernel = await start(kernos_settings, model)
    try:
        info = await kernel.processes.spawn("calc", {"messages": [("user", "hi")]}, principal=ADMIN)
        done = await kernel.processes.wait(info.pid, timeout=30)
        assert done.state is ProcessState.DONE, done.error
        assert collect.tokens[:3] == ["one ", "two ", "three"]
        assert done.output["messages"][-1]["data"]["content"] == "one two three"
        assert (done.usage.input_tokens, done.usage.output_tokens) == (7, 3)
    finally:
        await kernel.stop()


def test_messages_and_tools_convert_to_the_wire_and_back() -> None:
    request = chat_request(
        [
            HumanMessage("20+22?"),
            AIMessage("", tool_calls=[{"name": "add", "args": {"a": 20}, "id": "c1"}]),
            ToolMessage("42", tool_call_id="c1"),
        ],
        tools=[
            ToolSpec(name="add", description="Add.", func=add).json_schema()
            | {"title": "add", "description": "Add."}
        ],
        tool_choice="any",
        max_tokens=64,
    )
    assert request.messages[1]["tool_calls"][0]["function"] == {
        "name": "add",
        "arguments": '{"a": 20}',
    }
    assert request.tool_choice == "required" and request.max_tokens == 64
    assert request.tools is not None and request.tools[0]["function"]["name"] == "add"
    answer = ai_message(
        ChatResponse(
            message={
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                    },
                    {
                        "id": "c3",
                        "type": "function",
                        "function": {"name": "add", "arguments": "{oops"},
                    },
                ],
            },
            model="m-1",
            finish_reason="tool_calls",
            input_tokens=12,
            output_tokens=4,
            backend="main",
        )
    )
    assert answer.tool_calls == [
        {"name": "add", "args": {"a": 1, "b": 2}, "id": "c2", "type": "tool_call"}
    ]
    assert [c["id"] for c in answer.invalid_tool_calls] == ["c3"]
    assert answer.usage_metadata == {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16}
    assert answer.response_metadata["kernos_backend"] == "main"
    pieces = [
        ChatChunk(
            tool_calls=[
                {"index": 0, "id": "c4", "function": {"name": "add", "arguments": '{"a": '}}
            ]
        ),
        ChatChunk(tool_calls=[{"index": 0, "function": {"arguments": "5}"}}]),
        ChatChunk(finish_reason="tool_calls", input_tokens=3, output_tokens=2),
    ]
    total = message_chunk(pieces[0])
    for piece in pieces[1:]:
        total = total + message_chunk(piece)
    assert total.tool_calls == [{"name": "add", "args": {"a": 5}, "id": "c4", "type": "tool_call"}]
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] == 2
