"""The city scenario's governed tools: ``city_board``, ``city_plan`` and ``dispatch_trucks``.

Each acts on the scenario installed on the calling process's kernel and tenant
(:func:`kernos.plugins.city.scenario.scenario_for`); without one they fail with ``NotFound``.
``dispatch_trucks`` passes the syscall's idempotency key to the fleet, so a replayed dispatch
empties nothing twice; with ``hazard=true`` the approval rule the scenario installs makes it
wait for an inspector.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from kernos.kernel.catalog import ToolSpec
from kernos.plugins.routing.tools import RoutePlan


class PlanArgs(BaseModel):
    """Arguments of ``city_plan``: the board's columns and what to force or leave out."""

    day: int = Field(ge=0, description="Simulation day to plan (at its shift start).")
    bins: list[int] = Field(default_factory=list, description="Bins with a reading on the board.")
    levels: list[float] = Field(default_factory=list, description="Their latest levels.")
    ts: list[float] = Field(default_factory=list, description="Their reading times (s).")
    must: list[int] = Field(default_factory=list, description="Bins to empty in any case.")
    exclude: list[int] = Field(
        default_factory=list, description="Bins not to empty (e.g. hazardous, awaiting approval)."
    )


class DispatchArgs(BaseModel):
    """Arguments of ``dispatch_trucks``."""

    day: int = Field(ge=0, description="Simulation day the routes are for.")
    routes: list[RoutePlan] = Field(
        default_factory=list, description="The day's truck loads (from city_plan)."
    )
    hazard: bool = Field(
        default=False, description="A pickup of hazardous waste (needs an inspector)."
    )
    bins_hazardous: list[int] = Field(
        default_factory=list, description="Bins to empty by the hazardous-waste crew."
    )
    hazard_p: list[float] = Field(
        default_factory=list,
        description="The classifier's probability per hazardous bin (evidence for the inspector).",
    )


async def city_board() -> dict[str, Any]:
    """``city_board``: the latest forwarded reading of every bin (read up to now)."""
    from kernos.plugins.city.scenario import scenario_here

    scenario = scenario_here()
    await scenario.board.catch_up(scenario.bus)
    return scenario.board.snapshot()


async def city_plan(
    day: int,
    bins: list[int] | None = None,
    levels: list[float] | None = None,
    ts: list[float] | None = None,
    must: list[int] | None = None,
    exclude: list[int] | None = None,
) -> dict[str, Any]:
    """``city_plan``: the day's routes from the board's readings (OR-Tools, on a thread)."""
    import asyncio
    import functools

    from kernos.plugins.city.scenario import scenario_here

    planner = scenario_here().planner
    job = functools.partial(
        planner.plan,
        day=day,
        bins=bins or [],
        levels=levels or [],
        ts=ts or [],
        must=must or [],
        exclude=exclude or [],
    )
    return await asyncio.to_thread(job)


async def dispatch_trucks(
    day: int,
    routes: list[Any] | None = None,
    hazard: bool = False,
    bins_hazardous: list[int] | None = None,
    hazard_p: list[float] | None = None,
    idempotency_key: str = "",
) -> dict[str, Any]:
    """``dispatch_trucks``: execute the routes (or a hazardous pickup) once per syscall key."""
    from kernos.kernel.errors import InvalidInput
    from kernos.plugins.city.fleet import DispatchOrder, RouteOrder
    from kernos.plugins.city.scenario import scenario_here

    if not idempotency_key:
        raise InvalidInput("dispatch_trucks runs only as a governed tool (it needs its key)")
    scenario = scenario_here()
    plans = [r if isinstance(r, RoutePlan) else RoutePlan.model_validate(r) for r in routes or []]
    order = DispatchOrder(
        day=day,
        routes=tuple(
            RouteOrder(
                truck=r.truck,
                load=r.load,
                bins=tuple(r.bins),
                arrival_h=tuple(r.arrival_h),
                km=r.km,
            )
            for r in plans
        ),
        hazard=hazard,
        bins_hazardous=tuple(bins_hazardous or ()),
        hour=scenario.hour_of(day),
    )
    receipt = scenario.fleet.dispatch(order, key=idempotency_key)
    if not receipt.replayed:
        scenario.planner.picked_up(
            receipt.emptied, [day * 86_400.0 + h * 3600.0 for h in receipt.hours]
        )
    return {
        "day": receipt.day,
        "hazard": receipt.hazard,
        "emptied": list(receipt.emptied),
        "km": receipt.km,
        "mean_fill": round(sum(receipt.fill) / len(receipt.fill), 4) if receipt.fill else None,
        "replayed": receipt.replayed,
    }


CITY_TOOLS = (
    ToolSpec(
        name="city_board",
        description=(
            "The kernel's picture of the city's bins: the latest forwarded reading of each "
            "(level, band, time), and the readings of bins the edge flags as hazardous."
        ),
        func=city_board,
    ),
    ToolSpec(
        name="city_plan",
        description=(
            "Choose which bins to empty today and route the trucks (forecast, overflow risk, "
            "prize-collecting OR-Tools routing) from the board's readings."
        ),
        func=city_plan,
        args_schema=PlanArgs,
        timeout=120.0,
    ),
    ToolSpec(
        name="dispatch_trucks",
        description=(
            "Send the trucks on the day's routes, or (hazard=true) the hazardous-waste crew "
            "to the named bins; a hazardous pickup needs an inspector's approval."
        ),
        func=dispatch_trucks,
        args_schema=DispatchArgs,
    ),
)
"""The scenario's tools."""

__all__ = ["CITY_TOOLS", "DispatchArgs", "PlanArgs", "city_board", "city_plan", "dispatch_trucks"]
