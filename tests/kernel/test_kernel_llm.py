"""The kernel builds its LLM backends from settings and agents talk to them through the
scheduler: a governed ``llm.chat`` against sim-llm and against the real CPU server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

import pytest

from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.errors import ConfigError
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from tests.llm.fixtures import real_llm
from tests.llm.server import LLMServer

__all__ = ["real_llm"]

ADMIN = Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)


class Chat(TypedDict, total=False):
    question: str
    answer: str


def build_asker(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    model = build.model
    assert model is not None

    async def ask(state: Chat) -> Chat:
        reply = await model.ainvoke(state.get("question", "Which bin is full?"))
        return {"answer": str(reply.content)}

    graph = StateGraph(Chat)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return graph.compile()


class Agents:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(AgentSpec(name="asker", description="Asks the model once.", build=build_asker))


async def run_asker(home: Path, **settings: Any) -> Any:
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="agents")
    kernel = Kernel(load_settings(home=home, **settings), plugins=plugins)
    await kernel.start()
    try:
        assert kernel.scheduler is not None
        info = await kernel.processes.spawn(
            "asker", {"question": "Which bin is full?"}, principal=ADMIN
        )
        return await kernel.processes.wait(info.pid, timeout=120), kernel.scheduler.snapshot()
    finally:
        await kernel.stop()


async def test_agents_reach_a_configured_sim_backend(kernos_home: Path) -> None:
    done, lanes = await run_asker(
        kernos_home, llm_backends=[{"name": "sim", "kind": "sim-llm", "concurrency": 4}]
    )
    assert done.state == "done", done.error
    assert done.output["answer"].startswith("[simulated]")
    assert done.usage.llm_calls == 1 and done.usage.output_tokens > 0
    assert set(lanes) == {"sim"}


async def test_agents_reach_the_real_server_through_the_scheduler(
    kernos_home: Path, real_llm: LLMServer
) -> None:
    done, _ = await run_asker(kernos_home, llm_base_url=real_llm.base_url, llm_model=real_llm.model)
    assert done.state == "done", done.error
    assert isinstance(done.output["answer"], str) and done.output["answer"]
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0


async def test_a_backend_of_an_unknown_kind_stops_the_start(kernos_home: Path) -> None:
    kernel = Kernel(
        load_settings(home=kernos_home, llm_backends=[{"name": "x", "kind": "nonesuch"}])
    )
    with pytest.raises(ConfigError, match="nonesuch"):
        await kernel.start()
