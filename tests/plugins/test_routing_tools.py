"""The routing plugin's governed tools, called by an agent through a real kernel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypedDict

import numpy as np
import pytest
from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.errors import InvalidInput
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import BUILTIN_PLUGINS, PluginManager
from kernos.kernel.processes import ProcessState
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import AuditRow, SyscallRow
from kernos.plugins.routing.tools import PlanArgs, city_setup

ADMIN = Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)


class DispatchState(TypedDict, total=False):
    levels: list[float]
    forecast: dict[str, Any]
    plan: dict[str, Any]
    error: str


def build_dispatcher(build: AgentBuild) -> Any:
    """Forecast, then plan: each step a governed tool call."""
    from langgraph.graph import END, START, StateGraph

    tools = {t.name: t for t in build.tools}

    async def work(state: DispatchState) -> DispatchState:
        forecast = await tools["routing_forecast"].ainvoke(
            {"levels": state["levels"], "day": 40, "horizon": 1}
        )
        plan = await tools["routing_plan"].ainvoke(
            {"levels": state["levels"], "day": 40, "theta": 0.1, "must": [0], "exclude": [1]}
        )
        try:
            await tools["routing_plan"].ainvoke({"levels": [0.5], "day": 40})
        except InvalidInput as exc:
            return {"forecast": forecast, "plan": plan, "error": str(exc)}
        return {"forecast": forecast, "plan": plan, "error": ""}

    graph = StateGraph(DispatchState)
    graph.add_node("work", work)
    graph.add_edge(START, "work")
    graph.add_edge("work", END)
    return graph.compile()


class Agents:
    @hookimpl
    def register_agents(self, register):
        register(
            AgentSpec(
                name="city-dispatcher",
                description="Forecasts and plans a day.",
                build=build_dispatcher,
                tools=("routing_forecast", "routing_plan"),
            )
        )


@pytest.fixture
async def kernel(kernos_settings: Settings) -> AsyncIterator[Kernel]:
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="test-agents")
    kernel = Kernel(kernos_settings, plugins=plugins)
    await kernel.start()
    try:
        yield kernel
    finally:
        await kernel.stop()


def test_the_plugin_is_built_in_and_registers_both_tools() -> None:
    assert "kernos.plugins.routing.plugin" in [b.module for b in BUILTIN_PLUGINS]
    tools = PluginManager(entry_points=False).catalog().tools
    assert {"routing_forecast", "routing_plan"} <= set(tools)
    assert tools["routing_plan"].plugin == "kernos.plugins.routing.plugin"
    schema = tools["routing_plan"].json_schema()
    assert schema["properties"]["theta"]["exclusiveMaximum"] == 1


async def test_an_agent_forecasts_and_plans_through_governed_tools(kernel: Kernel) -> None:
    setup = city_setup(1)
    rng = np.random.default_rng(0)
    levels = np.round(rng.uniform(0.0, 1.0, setup.city.n_bins), 3)
    levels[1] = 1.2  # over the top, but excluded (say, awaiting an inspector)
    info = await kernel.processes.spawn(
        "city-dispatcher", {"levels": levels.tolist()}, principal=ADMIN
    )
    done = await kernel.processes.wait(info.pid, timeout=120)
    assert done.state is ProcessState.DONE, done.error
    forecast, plan = done.output["forecast"], done.output["plan"]

    assert len(forecast["mean"]) == setup.city.n_bins
    assert all(m >= lv for m, lv in zip(forecast["mean"], levels, strict=True))
    assert forecast["overflow_risk"][1] > 0.99 and 0 < forecast["next_day_mae"] < 0.1

    visited = set(plan["visited"])
    assert 0 in visited and 1 not in visited  # asked for / excluded
    assert set(plan["must"]) <= visited and not plan["dropped_must"]
    assert plan["km"] == pytest.approx(sum(r["km"] for r in plan["routes"]), abs=0.01)
    risky = {b for b, lv in enumerate(levels) if lv >= 0.95} - {1}
    assert risky <= set(plan["must"])  # would overflow today: must go
    assert len(plan["must"]) < setup.city.n_bins / 2
    assert "levels must list all 300 bins" in done.output["error"]

    async with kernel.db.read() as session:
        journal = list(await session.scalars(select(SyscallRow).where(SyscallRow.pid == info.pid)))
        audit = list(await session.scalars(select(AuditRow).where(AuditRow.pid == info.pid)))
    targets = sorted((j.target, j.status) for j in journal if j.kind == "tool.call")
    assert targets == [
        ("routing_forecast", "done"),
        ("routing_plan", "done"),
        ("routing_plan", "failed"),
    ]
    assert {a.target for a in audit if a.kind == "tool.call"} == {
        "routing_forecast",
        "routing_plan",
    }


def test_plan_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="theta"):
        PlanArgs(levels=[0.1], day=1, theta=1.5)
    with pytest.raises(ValueError, match="levels"):
        PlanArgs(levels=[], day=1)
