"""The ``routing`` plugin's governed tools: fill forecasting and route planning.

``routing_forecast`` and ``routing_plan`` work on the SIMULATED city (the pinned
``CityParams``, a city seed): the forecaster is trained once per city on a simulated history
and kept; the planner scores overflow risk with it and solves the day's prize-collecting
routing with OR-Tools. Both are CPU-bound and run on a worker thread, never on the event loop;
their arguments and results are pydantic models (validated on the way in, by the governed
tool, and on the way out, here). Each call is a ``tool.call`` syscall: authorized, audited
and journalled like any other.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from kernos.kernel.catalog import ToolSpec
from kernos.kernel.errors import InvalidInput

if TYPE_CHECKING:
    from kernos.plugins.routing.experiment import Setup
    from kernos.plugins.routing.vrp import Plan

HISTORY_DAYS = 364
"""Days of simulated history the tools' forecaster is trained on (a year, for the season)."""


class ForecastArgs(BaseModel):
    """Arguments of ``routing_forecast``."""

    levels: list[float] = Field(
        min_length=1, description="Latest fill level of every bin (fraction of capacity)."
    )
    day: int = Field(ge=0, le=HISTORY_DAYS - 1, description="Simulation day the levels are for.")
    horizon: int = Field(default=1, ge=0, le=14, description="Days ahead to forecast.")
    city_seed: int = Field(default=1, ge=0, description="Which simulated city.")


class ForecastResult(BaseModel):
    """What ``routing_forecast`` returns."""

    mean: list[float] = Field(description="Expected level per bin after ``horizon`` days.")
    std: list[float] = Field(description="Standard deviation of that level per bin.")
    overflow_risk: list[float] = Field(description="P(level > 1) per bin.")
    next_day_mae: float = Field(description="The model's held-out next-day error (MAE).")


class PlanArgs(BaseModel):
    """Arguments of ``routing_plan``."""

    levels: list[float] = Field(
        min_length=1, description="Current fill level of every bin (fraction of capacity)."
    )
    day: int = Field(ge=0, le=HISTORY_DAYS - 3, description="Simulation day to plan.")
    theta: float = Field(
        default=0.1, gt=0, lt=1, description="Risk threshold: bins above it must be emptied."
    )
    must: list[int] = Field(default_factory=list, description="Bins to empty in any case.")
    exclude: list[int] = Field(
        default_factory=list, description="Bins not to empty today (e.g. awaiting approval)."
    )
    prize_m: float = Field(
        default=800.0, ge=0, description="Metres worth driving to empty a bin due soon."
    )
    city_seed: int = Field(default=1, ge=0, description="Which simulated city.")


class RoutePlan(BaseModel):
    """One truck load's route."""

    truck: int
    load: int
    bins: list[int]
    arrival_h: list[float]
    km: float


class PlanResult(BaseModel):
    """What ``routing_plan`` returns."""

    routes: list[RoutePlan]
    km: float = Field(description="Total route length, km.")
    visited: list[int]
    must: list[int] = Field(description="Bins that had to be emptied (risk or request).")
    dropped_must: list[int] = Field(description="Must-go bins that did not fit (capacity, shift).")

    @classmethod
    def from_plan(cls, plan: Plan, must: Any) -> PlanResult:
        """The tool's answer for a solved ``plan`` and its must-go mask (a bool array)."""
        import numpy as np

        return cls(
            routes=[
                RoutePlan(
                    truck=r.truck,
                    load=r.load,
                    bins=list(r.bins),
                    arrival_h=[round(h, 3) for h in r.arrival_h],
                    km=r.metres / 1000.0,
                )
                for r in plan.routes
            ],
            km=round(plan.km, 3),
            visited=list(plan.visited),
            must=np.flatnonzero(must).tolist(),
            dropped_must=list(plan.dropped_must),
        )


@functools.lru_cache(maxsize=4)
def city_setup(city_seed: int) -> Setup:
    """The default city ``city_seed`` with its forecaster (trained once, then cached)."""
    from kernos.plugins.routing.experiment import make_setup
    from kernos.plugins.sensors.params import CityParams

    return make_setup(CityParams(), city_seed=city_seed, seed=0, days=HISTORY_DAYS)


def _levels(setup: Setup, levels: list[float]) -> Any:
    import numpy as np

    array = np.asarray(levels, dtype=np.float64)
    if array.shape != (setup.city.n_bins,):
        raise InvalidInput(f"levels must list all {setup.city.n_bins} bins of the city")
    return array


def forecast(args: ForecastArgs) -> ForecastResult:
    """Forecast every bin's level ``horizon`` days ahead (blocking; see :func:`forecast_tool`)."""
    import numpy as np

    from kernos.plugins.routing.policies import exceed_probability

    setup = city_setup(args.city_seed)
    mean, var = setup.model.predict(_levels(setup, args.levels), args.day, args.horizon)
    return ForecastResult(
        mean=np.round(mean, 4).tolist(),
        std=np.round(np.sqrt(var), 4).tolist(),
        overflow_risk=np.round(exceed_probability(mean, var), 4).tolist(),
        next_day_mae=round(_model_error(args.city_seed), 4),
    )


@functools.lru_cache(maxsize=4)
def _model_error(city_seed: int) -> float:
    from kernos.plugins.routing.experiment import history_for
    from kernos.plugins.routing.forecast import fit

    setup = city_setup(city_seed)
    history = history_for(setup.city, setup.params, 1, days=HISTORY_DAYS)
    return fit(history, train_days=HISTORY_DAYS * 3 // 4).evaluate(history).mae


def plan(args: PlanArgs) -> PlanResult:
    """Choose and route today's bins (blocking; see :func:`plan_tool`)."""
    import numpy as np

    from kernos.plugins.routing.policies import DynamicPolicy

    setup = city_setup(args.city_seed)
    levels = _levels(setup, args.levels)
    n = setup.city.n_bins
    for b in (*args.must, *args.exclude):
        if not 0 <= b < n:
            raise InvalidInput(f"bin ids must be within 0..{n - 1}, got {b}")
    policy = DynamicPolicy(
        setup.model,
        setup.router,
        theta=args.theta,
        noise_sigma=setup.params.noise_sigma,
        prize_m=args.prize_m,
    )
    policy.mean = levels
    level, risks = policy.risks(args.day)
    must = risks[0] > args.theta
    must[args.must] = True
    value = np.maximum(risks[-1], policy.fill_value(level))
    excluded = np.zeros(n, dtype=bool)
    excluded[args.exclude] = True
    must &= ~excluded
    value[excluded] = 0.0
    return PlanResult.from_plan(policy.select_bins(level, value, must), must)


async def forecast_tool(
    levels: list[float], day: int, horizon: int = 1, city_seed: int = 1
) -> dict[str, Any]:
    """``routing_forecast``: runs the model on a worker thread."""
    args = ForecastArgs(levels=levels, day=day, horizon=horizon, city_seed=city_seed)
    return (await asyncio.to_thread(forecast, args)).model_dump()


async def plan_tool(
    levels: list[float],
    day: int,
    theta: float = 0.1,
    must: list[int] | None = None,
    exclude: list[int] | None = None,
    prize_m: float = 800.0,
    city_seed: int = 1,
) -> dict[str, Any]:
    """``routing_plan``: runs OR-Tools on a worker thread."""
    args = PlanArgs(
        levels=levels,
        day=day,
        theta=theta,
        must=must or [],
        exclude=exclude or [],
        prize_m=prize_m,
        city_seed=city_seed,
    )
    return (await asyncio.to_thread(plan, args)).model_dump()


def tool_specs() -> list[ToolSpec]:
    """``routing_forecast`` and ``routing_plan``."""
    found: list[ToolSpec] = []
    register = found.append
    register(
        ToolSpec(
            name="routing_forecast",
            description=(
                "Forecast each bin's fill level (mean, spread, overflow risk) some days ahead "
                "from the latest levels, for the simulated city."
            ),
            func=forecast_tool,
            args_schema=ForecastArgs,
        )
    )
    register(
        ToolSpec(
            name="routing_plan",
            description=(
                "Choose which bins to empty today and route the trucks (OR-Tools, "
                "prize-collecting): bins at overflow risk above theta must go."
            ),
            func=plan_tool,
            args_schema=PlanArgs,
        )
    )
    return found
