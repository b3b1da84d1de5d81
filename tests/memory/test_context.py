"""Context management: trimming keeps the system message and tool-call pairs within the
budget; summaries are written by the agent's governed model (an ``llm.chat`` syscall) in a
real kernel running LangGraph's prebuilt agent, with LangChain's scripted chat model behind it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
)
from langchain_core.messages.utils import count_tokens_approximately
from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.errors import InvalidInput
from kernos.kernel.governed import KernelChatModel
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.processes import ProcessState
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import AuditRow
from kernos.memory.context import (
    SUMMARY_PREFIX,
    context_hook,
    summarize_to_budget,
    trim_to_budget,
)
from kernos.policy.service import policy_services


def conversation(rounds: int = 6) -> list[BaseMessage]:
    """A system message, then rounds of question, tool call, tool result, answer."""
    messages: list[BaseMessage] = [SystemMessage(content="You help run the city's bins.")]
    for i in range(rounds):
        call = {"id": f"call-{i}", "name": "bin_level", "args": {"bin": i}}
        messages += [
            HumanMessage(content=f"How full is bin {i}? Please check it for me today."),
            AIMessage(content="", tool_calls=[call]),
            ToolMessage(content=f"Bin {i} is {10 * i}% full.", tool_call_id=f"call-{i}"),
            AIMessage(content=f"Bin {i} is {10 * i} percent full; no truck needed yet."),
        ]
    return messages


def check_pairs(kept: list[BaseMessage]) -> None:
    """Every tool result follows the AI message that called it; every call is answered
    unless it is the last message."""
    called: set[str] = set()
    for i, message in enumerate(kept):
        if isinstance(message, AIMessage):
            called |= {c["id"] for c in message.tool_calls}
            for call in message.tool_calls:
                rest = kept[i + 1 :]
                assert not rest or any(
                    isinstance(m, ToolMessage) and m.tool_call_id == call["id"] for m in rest
                )
        if isinstance(message, ToolMessage):
            assert message.tool_call_id in called


def test_trimming_keeps_the_system_message_and_whole_pairs_within_the_budget() -> None:
    messages = conversation()
    total = count_tokens_approximately(messages)
    assert trim_to_budget(messages, total) == messages  # within budget: untouched
    for budget in range(40, total, 7):
        kept = trim_to_budget(messages, budget)
        assert kept[0] == messages[0]
        assert count_tokens_approximately(kept) <= budget
        assert len(kept) == 1 or isinstance(kept[1], HumanMessage)
        assert kept[1:] == messages[len(messages) - len(kept) + 1 :]  # the most recent ones
        check_pairs(kept)
    with pytest.raises(InvalidInput):
        trim_to_budget(messages, 0)


class Recorder(BaseCallbackHandler):
    """Records what chat models were asked (LangChain's callback mechanism)."""

    def __init__(self) -> None:
        self.asked: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.asked.extend(messages)


async def test_summarizing_replaces_the_oldest_span_with_the_models_summary() -> None:
    messages = conversation()
    budget = count_tokens_approximately(messages) // 2
    recorder = Recorder()
    model = FakeMessagesListChatModel(
        responses=[AIMessage(content="Bins 0-2 were checked; all below 30%.")],
        callbacks=[recorder],
    )
    kept = await summarize_to_budget(messages, budget, model=model, summary_tokens=64)
    assert count_tokens_approximately(kept) <= budget
    [system, first, *_] = kept
    assert isinstance(system, SystemMessage)
    assert system.text.startswith("You help run the city's bins.")
    assert system.text.endswith(SUMMARY_PREFIX + "Bins 0-2 were checked; all below 30%.")
    assert isinstance(first, HumanMessage)
    check_pairs(kept)
    # The model read exactly the span that was dropped, and nothing that was kept.
    [asked] = recorder.asked
    transcript = asked[1].text
    dropped = messages[1 : len(messages) - len(kept) + 1]
    assert all(m.text in transcript for m in dropped if m.text)
    assert kept[1].text not in transcript
    # Without a model, or with the kernel's model when no backend is configured: trimmed.
    trimmed = trim_to_budget(messages, budget)
    assert await summarize_to_budget(messages, budget, model=None) == trimmed
    unconfigured = KernelChatModel(model_name="none")
    assert await summarize_to_budget(messages, budget, model=unconfigured) == trimmed
    with pytest.raises(InvalidInput, match="no room"):
        await summarize_to_budget(messages, 20, model=model, summary_tokens=64)


# -- In a kernel: LangGraph's prebuilt agent with the hook ----------------------------------

BUDGET = 150


def react_agent(*, replace_history: bool) -> Any:
    def build(spec: AgentBuild) -> Any:
        from langgraph.prebuilt import create_react_agent

        hook = context_hook(
            BUDGET, model=spec.model, summary_tokens=40, replace_history=replace_history
        )
        return create_react_agent(spec.model, spec.tools, pre_model_hook=hook)

    return build


class Agents:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(
            AgentSpec(name="brief", description="cuts", build=react_agent(replace_history=False))
        )
        register(
            AgentSpec(
                name="compact", description="rewrites", build=react_agent(replace_history=True)
            )
        )


@pytest.fixture
async def kernel(kernos_settings: Settings) -> AsyncIterator[Kernel]:
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="context-agents")
    llm = FakeMessagesListChatModel(
        responses=[AIMessage(content="SUMMARY: bins 0-3 checked."), AIMessage(content="Done.")]
    )
    started = Kernel(kernos_settings, plugins=plugins, llm=llm)
    await started.start()
    await policy_services(started).engine.grant_role("otto", "operator", "default")
    try:
        yield started
    finally:
        await started.stop()


@pytest.mark.parametrize("agent", ["brief", "compact"])
async def test_a_prebuilt_agent_summarizes_through_the_governed_model(
    kernel: Kernel, agent: str
) -> None:
    otto = await kernel.identity.ensure_principal("default", "otto", kind=PrincipalKind.PERSON)
    history = [message_to_dict(m)["data"] | {"type": m.type} for m in conversation()[1:]]
    history.append({"type": "human", "content": "And bin 9?"})
    info = await kernel.processes.spawn(agent, {"messages": history}, principal=otto)
    done = await kernel.processes.wait(info.pid, timeout=60)
    assert done.state is ProcessState.DONE, done.error
    # Two governed model calls: the summary (the prompt and the transcript), then the answer
    # on the summary and the most recent messages.
    async with kernel.db.read() as session:
        calls = list(
            await session.scalars(
                select(AuditRow)
                .where(AuditRow.pid == info.pid, AuditRow.event == "syscall.intent")
                .order_by(AuditRow.seq)
            )
        )
    assert [c.kind for c in calls] == ["llm.chat", "llm.chat"]
    summary_call, answer_call = calls
    assert summary_call.args == {"messages": 2}
    assert 1 < answer_call.args["messages"] < len(history)
    messages = done.output["messages"]
    assert messages[-1]["data"]["content"] == "Done."
    if agent == "compact":  # the history itself now starts with the summary
        assert messages[0]["type"] == "system"
        assert "SUMMARY: bins 0-3 checked." in messages[0]["data"]["content"]
        assert len(messages) == answer_call.args["messages"] + 1
    else:  # the history is whole; only the model's input was cut
        assert len(messages) == len(history) + 1
