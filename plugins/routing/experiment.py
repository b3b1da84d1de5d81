"""Comparing collection policies on the simulated city with common random numbers.

:func:`run` drives one policy through one replication: the city (``city_seed``) and the
randomness (``seed``: fills, events, sensor noise and faults) are the same for every policy,
so two policies on the same seed differ only by what they empty. Policies are tuned on a
*history*: the same city and calendar days under another seed (``seed + HISTORY_SEED``),
last year's data for this period. Days before ``params.warmup_days`` are simulated but not
counted.

:func:`sweep` runs policies x parameters x replications (optionally on worker processes) and
:func:`summarize` gives means with 95 % t-intervals. :func:`matched` compares two trade-off
curves: *km at matched overflow* interpolates the baseline's km at each Kernos point's
overflow along the baseline's curve (piecewise linear, points sorted by overflow), and
*overflow at matched km* does the same with the axes swapped; both are computed per
replication (the curves of one seed against each other) and then averaged with a t-interval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from kernos.kernel.errors import InvalidInput
from kernos.plugins.routing.forecast import FillHistory, Forecaster, fit
from kernos.plugins.routing.policies import (
    PRIZE_M,
    DynamicPolicy,
    Observation,
    Oracle,
    Policy,
    Router,
    SensorsNoForecast,
    StaticBaseline,
)
from kernos.plugins.routing.vrp import Fleet, Plan, SearchLimits, distance_matrix_m
from kernos.plugins.sensors.city import City
from kernos.plugins.sensors.params import CityParams
from kernos.plugins.sensors.readings import SensorModel
from kernos.plugins.sensors.sim import DayRecord, FillProcess, Simulation

FloatArray = npt.NDArray[np.float64]

HISTORY_SEED = 100_000
"""Offset of the history's seed from the replication's seed."""
KINDS = ("static", "kernos", "sensors", "oracle")
"""Policy kinds :func:`make_policy` builds."""

# two-sided 95 % quantiles of Student's t by degrees of freedom (1..30); beyond: normal
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.nan
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicySpec:
    """Which policy with which trade-off parameter (picklable, for worker processes)."""

    kind: str
    """One of :data:`KINDS`."""
    param: float
    """static: overflow tolerance alpha; kernos: risk threshold theta; sensors: must-go
    reading; oracle: safety margin."""
    prize_m: float = PRIZE_M
    """Metres the dynamic policies would drive to empty a full bin they need not empty yet."""

    @property
    def label(self) -> str:
        """``kind@param``."""
        return f"{self.kind}@{self.param:g}"


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    """Metrics of one policy over one replication, warm-up excluded."""

    kind: str
    param: float
    seed: int
    days: int
    """Days counted."""
    route_km: float
    overflow_incidents: int
    """Bin-days above 100 %."""
    pickups: int
    mean_fill_at_pickup: float
    dropped_must: int
    """Must-visit bins the routing could not fit."""
    wall_s: float
    """Wall time of the whole run (warm-up included), seconds."""


@dataclass(frozen=True, eq=False)
class Setup:
    """Everything one replication shares across policies."""

    params: CityParams
    city: City
    seed: int
    days: int
    model: Forecaster
    router: Router


def history_for(city: City, params: CityParams, seed: int, *, days: int) -> FillHistory:
    """Last year's fills for the same city and calendar days (seed ``seed + HISTORY_SEED``)."""
    process = FillProcess.draw(city, params, seed + HISTORY_SEED, days=max(days, 56))
    return FillHistory(
        increments=process.increments,
        bin_class=city.bin_class,
        xy_km=city.xy_km,
        start_weekday=params.start_weekday,
    )


def make_setup(
    params: CityParams,
    *,
    city_seed: int,
    seed: int,
    days: int,
    limits: SearchLimits | None = None,
) -> Setup:
    """City, fitted forecaster and router for one replication."""
    if days <= params.warmup_days:
        raise InvalidInput(f"days must exceed the warm-up of {params.warmup_days} days")
    city = City.generate(params, city_seed)
    model = fit(history_for(city, params, seed, days=days))
    router = Router(
        dist_m=distance_matrix_m(city.dist_km),
        volume_l=city.volume_l,
        fleet=Fleet.from_params(params),
        limits=limits or SearchLimits(),
        fill_start_h=params.fill_start_h,
        fill_end_h=params.fill_end_h,
        latest_fraction=min(
            max((params.shift_start_h + params.shift_h - params.fill_start_h), 0.0)
            / (params.fill_end_h - params.fill_start_h),
            1.0,
        ),
    )
    return Setup(params=params, city=city, seed=seed, days=days, model=model, router=router)


def make_policy(spec: PolicySpec, setup: Setup) -> Policy:
    """Build the policy ``spec`` names for ``setup``."""
    if spec.kind == "static":
        return StaticBaseline(
            setup.model,
            setup.router,
            alpha=spec.param,
            xy_km=setup.city.xy_km,
            depot_km=setup.city.depot_km,
            days=range(setup.params.warmup_days, setup.days),
        )
    if spec.kind == "kernos":
        return DynamicPolicy(
            setup.model,
            setup.router,
            theta=spec.param,
            noise_sigma=setup.params.noise_sigma,
            prize_m=spec.prize_m,
        )
    if spec.kind == "sensors":
        return SensorsNoForecast(setup.router, threshold=spec.param, prize_m=spec.prize_m)
    if spec.kind == "oracle":
        return Oracle(setup.router, margin=spec.param, prize_m=spec.prize_m)
    raise InvalidInput(f"unknown policy kind {spec.kind!r}; known: {', '.join(KINDS)}")


def _night_record(sim: Simulation) -> DayRecord:
    """Today's record up to shift start: nothing arrives or is emptied before then, so the
    level is the start level (what the sensors read overnight)."""
    n = sim.city.n_bins
    level = sim.level
    return DayRecord(
        day=sim.day,
        weekday=(sim.params.start_weekday + sim.day) % 7,
        fill_start_h=sim.params.fill_start_h,
        fill_end_h=sim.params.fill_end_h,
        start_level=level,
        increment=np.zeros(n),
        end_level=level,
        peak_level=level,
        empty_bins=np.zeros(0, dtype=np.int64),
        empty_hours=np.zeros(0),
        empty_levels=np.zeros(0),
        hazard_from_h=np.full(n, np.inf),
        hazard_to_h=np.full(n, np.inf),
        hazard_started=np.zeros(n, dtype=bool),
    )


def observe(
    sim: Simulation, sensors: SensorModel, evening: tuple[FloatArray, FloatArray] | None
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Mean of the level readings since waste stopped arriving: yesterday from
    ``fill_end_h`` (``evening``: their sum and count) and tonight until shift start."""
    night = sensors.readings(_night_record(sim))
    rows = night.hours < sim.params.shift_start_h
    values = np.where(night.present[rows], night.level[rows], 0.0)
    total = values.sum(axis=0)
    count = night.present[rows].sum(axis=0)
    if evening is not None:
        total = total + evening[0]
        count = count + evening[1].astype(np.int64)
    level = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return level, count.astype(np.int64)


def run(
    spec: PolicySpec,
    setup: Setup,
    *,
    on_day: Callable[[DayRecord, Plan], None] | None = None,
) -> RunResult:
    """Run ``spec`` over the replication ``setup``; metrics after the warm-up. ``on_day``
    sees each day's record and plan (tests compare the randomness two policies saw)."""
    started = time.perf_counter()
    params, city = setup.params, setup.city
    policy = make_policy(spec, setup)
    sim = Simulation(city, params, setup.seed, days=setup.days + 5)
    sensors = SensorModel(city, params, setup.seed, days=setup.days + 5)
    uses_sensors = spec.kind in ("kernos", "sensors")
    evening: tuple[FloatArray, FloatArray] | None = None
    km = 0.0
    dropped_must = 0
    for day in range(setup.days):
        if uses_sensors:
            level, count = observe(sim, sensors, evening)
        else:
            level, count = np.full(city.n_bins, np.nan), np.zeros(city.n_bins, dtype=np.int64)
        obs = Observation(
            day=day,
            level=level,
            count=count,
            true_level=sim.level if spec.kind == "oracle" else None,
            true_fill=sim.fill.increments[day : day + 5] if spec.kind == "oracle" else None,
        )
        plan = policy.plan(obs)
        bins, hours = plan.stops()
        if bins.size:
            sim.empty(bins, hour=np.minimum(hours, 24.0))
        policy.collected(obs, plan)
        record = sim.step_day()
        if on_day is not None:
            on_day(record, plan)
        if uses_sensors:
            batch = sensors.readings(record)
            rows = batch.hours >= params.fill_end_h
            evening = (
                np.where(batch.present[rows], batch.level[rows], 0.0).sum(axis=0),
                batch.present[rows].sum(axis=0).astype(np.float64),
            )
        if day >= params.warmup_days:
            km += plan.km
            dropped_must += len(plan.dropped_must)
    summary = sim.summary()
    return RunResult(
        kind=spec.kind,
        param=spec.param,
        seed=setup.seed,
        days=int(summary["days"]),
        route_km=km,
        overflow_incidents=int(summary["overflow_bin_days"]),
        pickups=int(summary["collections"]),
        mean_fill_at_pickup=float(summary["mean_fill_at_emptying"]),
        dropped_must=dropped_must,
        wall_s=time.perf_counter() - started,
    )


def _replication(
    args: tuple[CityParams, int, int, int, SearchLimits | None, tuple[PolicySpec, ...]],
) -> list[RunResult]:
    params, city_seed, seed, days, limits, specs = args
    setup = make_setup(params, city_seed=city_seed, seed=seed, days=days, limits=limits)
    return [run(spec, setup) for spec in specs]


def sweep(
    specs: Sequence[PolicySpec],
    *,
    params: CityParams | None = None,
    city_seed: int = 1,
    seeds: Iterable[int],
    days: int,
    workers: int = 1,
    limits: SearchLimits | None = None,
) -> list[RunResult]:
    """Every spec on every seed (one replication per seed); ``workers`` > 1 uses processes."""
    params = params or CityParams()
    jobs = [(params, city_seed, s, days, limits, tuple(specs)) for s in seeds]
    if workers <= 1:
        return [r for job in jobs for r in _replication(job)]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return [r for batch in pool.map(_replication, jobs) for r in batch]


@dataclass(frozen=True, kw_only=True, slots=True)
class Estimate:
    """A mean over replications with its 95 % t-interval half-width."""

    mean: float
    half_width: float
    n: int

    def __str__(self) -> str:
        """``mean ± half``."""
        return f"{self.mean:.4g} ± {self.half_width:.2g}"


def estimate(values: Sequence[float]) -> Estimate:
    """Mean and 95 % t-interval of ``values``."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Estimate(mean=math.nan, half_width=math.nan, n=0)
    half = t975(x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size) if x.size > 1 else math.nan
    return Estimate(mean=float(x.mean()), half_width=half, n=int(x.size))


METRICS = ("route_km", "overflow_incidents", "pickups", "mean_fill_at_pickup", "wall_s")
"""What :func:`summarize` reports per policy point."""


def summarize(results: Sequence[RunResult]) -> dict[str, dict[str, Estimate]]:
    """Per ``kind@param``: each metric's mean and 95 % interval over replications."""
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(PolicySpec(kind=r.kind, param=r.param).label, []).append(r)
    return {
        label: {m: estimate([float(getattr(r, m)) for r in rs]) for m in METRICS}
        for label, rs in groups.items()
    }


def _interp(x: float, xs: FloatArray, ys: FloatArray) -> float:
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    if not xs[0] <= x <= xs[-1]:
        return math.nan
    return float(np.interp(x, xs, ys))


@dataclass(frozen=True, kw_only=True, slots=True)
class Matched:
    """One Kernos point against the baseline's curve."""

    param: float
    """Kernos's risk threshold."""
    km_reduction: Estimate
    """1 - Kernos km / baseline km at Kernos's overflow (NaN where outside the curve)."""
    overflow_reduction: Estimate
    """1 - Kernos overflow / baseline overflow at Kernos's km."""


def matched(
    results: Sequence[RunResult], *, baseline: str = "static", challenger: str = "kernos"
) -> list[Matched]:
    """For each challenger point: reductions at matched overflow and at matched km, computed
    per replication along that replication's baseline curve, then averaged (95 % t)."""
    by_seed: dict[int, list[RunResult]] = {}
    for r in results:
        by_seed.setdefault(r.seed, []).append(r)
    params = sorted({r.param for r in results if r.kind == challenger})
    km_red: dict[float, list[float]] = {p: [] for p in params}
    ov_red: dict[float, list[float]] = {p: [] for p in params}
    for runs in by_seed.values():
        base = [r for r in runs if r.kind == baseline]
        if len(base) < 2:
            continue
        b_ov = np.array([r.overflow_incidents for r in base], dtype=np.float64)
        b_km = np.array([r.route_km for r in base], dtype=np.float64)
        for r in runs:
            if r.kind != challenger:
                continue
            km_at = _interp(float(r.overflow_incidents), b_ov, b_km)
            ov_at = _interp(r.route_km, b_km, b_ov)
            km_red[r.param].append(1.0 - r.route_km / km_at if km_at > 0 else math.nan)
            ov_red[r.param].append(1.0 - r.overflow_incidents / ov_at if ov_at > 0 else math.nan)
    return [
        Matched(param=p, km_reduction=estimate(km_red[p]), overflow_reduction=estimate(ov_red[p]))
        for p in params
    ]


def as_dict(result: RunResult) -> dict[str, float | int | str]:
    """A result as plain JSON-able values."""
    return dict(asdict(result))


__all__ = [
    "HISTORY_SEED",
    "KINDS",
    "Estimate",
    "Matched",
    "PolicySpec",
    "RunResult",
    "Setup",
    "as_dict",
    "estimate",
    "history_for",
    "make_policy",
    "make_setup",
    "matched",
    "observe",
    "run",
    "summarize",
    "sweep",
    "t975",
]
