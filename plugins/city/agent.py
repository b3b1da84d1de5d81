"""The dispatcher agent: one process per simulated day, each step a syscall.

A LangGraph ``StateGraph`` without a language model:

1. ``observe`` — ``city_board``: the latest forwarded reading of every bin;
2. ``classify`` — ``hazard_classify`` on the bins the edge flags as hazardous (skipped when
   none is);
3. ``plan`` — ``city_plan`` with the board's readings, leaving out confirmed hazardous bins;
4. ``dispatch`` — ``dispatch_trucks`` with the day's routes (no approval needed);
5. ``escalate`` — per confirmed hazardous bin, ``dispatch_trucks(hazard=true)``, which the
   approval rule sends to an inspector (escalating to an admin after its deadline); a denied or
   expired approval leaves the bin where it is and is recorded, not raised.

The day comes in as ``{"day": N}`` (the ``city.day`` trigger maps its event to it).
"""

from __future__ import annotations

from typing import Any, TypedDict

from pydantic import BaseModel, Field

from kernos.kernel.catalog import AgentBuild, AgentSpec, Budgets
from kernos.plugins.city import AGENT

TOOLS = ("city_board", "hazard_classify", "city_plan", "dispatch_trucks")
"""The tools the dispatcher uses (its manifest)."""


class DayInput(BaseModel):
    """The dispatcher's input."""

    day: int = Field(ge=0, description="Simulation day to dispatch (at its shift start).")


class DayState(TypedDict, total=False):
    """What the dispatcher's steps hand each other."""

    day: int
    board: dict[str, Any]
    hazards: list[dict[str, Any]]
    plan: dict[str, Any]
    dispatched: dict[str, Any]
    hazardous: list[dict[str, Any]]


def build_dispatcher(build: AgentBuild) -> Any:
    """The dispatcher's graph on the kernel's governed tools."""
    from langchain_core.tools import ToolException
    from langgraph.graph import END, START, StateGraph

    from kernos.kernel.errors import KernosError

    tools = {t.name: t for t in build.tools}
    for tool in tools.values():
        tool.handle_tool_error = False  # the kernel's error, not a message to a model

    async def call(name: str, args: dict[str, Any]) -> Any:
        try:
            return await tools[name].ainvoke(args)
        except ToolException as exc:
            cause = exc.__cause__
            raise (cause if isinstance(cause, KernosError) else exc) from None

    async def observe(state: DayState) -> DayState:
        return {"board": await call("city_board", {})}

    async def classify(state: DayState) -> DayState:
        board = state["board"]
        flagged = board.get("hazard") or []
        if not flagged:
            return {"hazards": []}
        readings = [
            {k: board["readings"][str(b)][k] for k in ("bin", "level", "temp_c", "voc_ppm")}
            for b in flagged
        ]
        result = await call("hazard_classify", {"readings": readings})
        return {"hazards": list(result["bins"])}

    async def plan(state: DayState) -> DayState:
        board = state["board"]
        confirmed = [h["bin"] for h in state.get("hazards", []) if h["hazard"]]
        args = {
            "day": state["day"],
            "bins": board["bins"],
            "levels": board["level"],
            "ts": board["ts"],
            "exclude": confirmed,
        }
        return {"plan": await call("city_plan", args)}

    async def dispatch(state: DayState) -> DayState:
        routes = state["plan"]["routes"]
        args = {"day": state["day"], "routes": routes, "hazard": False}
        return {"dispatched": await call("dispatch_trucks", args)}

    async def escalate(state: DayState) -> DayState:
        outcomes: list[dict[str, Any]] = []
        for h in state.get("hazards", []):
            if not h["hazard"]:
                continue
            args = {
                "day": state["day"],
                "routes": [],
                "hazard": True,
                "bins_hazardous": [h["bin"]],
                "hazard_p": [h["p"]],
            }
            try:
                receipt = await call("dispatch_trucks", args)
            except KernosError as exc:  # denied or expired: the bin waits
                outcomes.append({"bin": h["bin"], "p": h["p"], "outcome": exc.code})
                continue
            outcomes.append({"bin": h["bin"], "p": h["p"], "outcome": "emptied", **receipt})
        return {"hazardous": outcomes}

    graph = StateGraph(DayState)
    for name, node in (
        ("observe", observe),
        ("classify", classify),
        ("plan", plan),
        ("dispatch", dispatch),
        ("escalate", escalate),
    ):
        graph.add_node(name, node)
    graph.add_edge(START, "observe")
    graph.add_edge("observe", "classify")
    graph.add_edge("classify", "plan")
    graph.add_edge("plan", "dispatch")
    graph.add_edge("dispatch", "escalate")
    graph.add_edge("escalate", END)
    return graph.compile()


DISPATCHER_AGENT = AgentSpec(
    name=AGENT,
    description=(
        "Dispatches the city's waste trucks for one day: reads the bins, classifies hazards, "
        "plans routes, dispatches, and sends hazardous pickups to an inspector."
    ),
    build=build_dispatcher,
    tools=TOOLS,
    input_schema=DayInput,
    budgets=Budgets(max_tool_calls=50),
)
"""The dispatcher agent's spec."""

__all__ = ["DISPATCHER_AGENT", "TOOLS", "DayInput", "DayState", "build_dispatcher"]
