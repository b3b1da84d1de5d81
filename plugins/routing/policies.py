"""Collection policies for the simulated city: the tuned static baseline, Kernos's dynamic
dispatch, and the two brackets of CITY-SIM-NOTES (a perfect-information oracle, and sensors
without forecasting). All of them route with the same :func:`~.vrp.solve` setup, fleet and
capacity; only what they know and how they choose bins differ.

Each day at shift start a policy gets an :class:`Observation` and returns a
:class:`~.vrp.Plan`. What a policy may read is part of its definition: the static baseline
reads nothing (its plan was fixed from history), the dynamic policy and the sensor bracket
read the sensor readings, and only the oracle reads the true levels and fills.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kernos.kernel.errors import InvalidInput
from kernos.plugins.routing.forecast import Forecaster
from kernos.plugins.routing.vrp import Fleet, Plan, SearchLimits, solve

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

INTERVALS = (1, 2, 3, 7, 14)
"""The static plan's collection intervals, days (CITY-SIM-NOTES)."""
PRIZE_M = 800.0
"""Prize for an optional bin at full value, metres (tuned on seed 1, not an evaluation seed)."""
FILL_FROM = 0.3
"""Level from which what a bin holds is worth a detour (tuned with ``PRIZE_M``)."""

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def exceed_probability(mean: FloatArray, var: FloatArray, *, limit: float = 1.0) -> FloatArray:
    """P(X > limit) for X with ``mean`` and ``var``: gamma-shaped (Wilson-Hilferty), so the
    right tail of a skewed fill is not underestimated; a point mass where ``var`` is 0."""
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    safe_mean = np.maximum(mean, 1e-9)
    safe_var = np.maximum(var, 1e-12)
    shape = safe_mean**2 / safe_var
    c = 1.0 / (9.0 * shape)
    z = ((limit / safe_mean) ** (1.0 / 3.0) - (1.0 - c)) / np.sqrt(c)
    p = 0.5 * _erfc(z / math.sqrt(2.0))
    p = np.where(var <= 0, (mean > limit).astype(np.float64), p)
    out: FloatArray = np.where(mean <= 0, 0.0, p)
    return out


@dataclass(frozen=True, eq=False)
class Observation:
    """What is known at shift start of ``day``."""

    day: int
    """Simulation day."""
    level: FloatArray
    """Mean of the level readings since waste stopped arriving (yesterday evening to this
    morning), NaN where none arrived, shape (n,)."""
    count: IntArray
    """Readings behind each ``level``."""
    true_level: FloatArray | None = None
    """True level at shift start (the oracle's privilege)."""
    true_fill: FloatArray | None = None
    """True fills of today and tomorrow, shape (2, n) (the oracle's privilege)."""


@dataclass(frozen=True, eq=False)
class Router:
    """The shared routing setup: distances, fleet, bin volumes, search limits."""

    dist_m: IntArray
    """Integer metres between nodes (0 = depot, ``i + 1`` = bin ``i``)."""
    volume_l: FloatArray
    """Capacity per bin, litres."""
    fleet: Fleet
    """Trucks and shift."""
    limits: SearchLimits = field(default_factory=SearchLimits)
    """Search limits (solution counts)."""
    fill_start_h: float = 7.0
    """Hour waste starts arriving."""
    fill_end_h: float = 22.0
    """Hour waste stops arriving."""
    pickup_fraction: float = 0.25
    """Share of a day's fill that typically arrives before a bin is reached (fill runs from
    shift start over 15 h; a stop mid-shift is reached after about a quarter of it)."""
    latest_fraction: float = 0.5
    """Share of a day's fill that may arrive before a bin is reached at the latest (the end
    of the shift): what "safe until tomorrow's pickup" must allow for."""

    def left_after(self, hour: float) -> float:
        """Share of a day's fill still to come after ``hour``."""
        span = self.fill_end_h - self.fill_start_h
        return min(max((self.fill_end_h - hour) / span, 0.0), 1.0)

    def route(self, bins: IntArray, levels: FloatArray, penalties: list[float | None]) -> Plan:
        """Solve one day for ``bins`` whose expected levels at pickup are ``levels``."""
        demand = (np.maximum(levels, 0.0) * self.volume_l[bins]).tolist()
        return solve(
            self.dist_m,
            bins.tolist(),
            demand_l=demand,
            penalty_m=penalties,
            fleet=self.fleet,
            limits=self.limits,
        )


class Policy(ABC):
    """A collection policy: one plan per day."""

    name: str = "policy"

    @abstractmethod
    def plan(self, obs: Observation) -> Plan:
        """The day's routes given what is known at shift start."""

    def collected(self, obs: Observation, plan: Plan) -> None:  # noqa: B027 - optional hook
        """Told after the plan ran (dynamic policies update their state here)."""


def tune_intervals(
    model: Forecaster, alpha: float, *, days: range, pickup_fraction: float = 0.25
) -> IntArray:
    """Per bin, the largest interval in :data:`INTERVALS` whose overflow probability per
    cycle stays under ``alpha`` (1 day when none does).

    A cycle's fill is the sum of ``k`` days' fills with the bin's mean rate, its class's
    weekday profile and the season averaged over ``days`` (the period the plan is for), and
    variance ``(cv x mean)²`` per day; for intervals that are not whole weeks the probability
    is averaged over the weekday a cycle starts on (k = 2, 3 rotate through all of them).
    """
    if not 0 < alpha < 1:
        raise InvalidInput("alpha must be in (0, 1)")
    season = float(model.season[[min(d, model.season.shape[0] - 1) for d in days]].mean())
    rate = model.rate * season
    prof = model.profile[model.bin_class]  # (n, 7)
    cv2 = model.cv[model.bin_class] ** 2
    chosen = np.ones(model.n_bins, dtype=np.int64)
    for k in INTERVALS:
        probs = []
        for start in range(7):
            wd = [(start + j) % 7 for j in range(k + 1)]
            # from pickup to pickup: the rest of the first day, k - 1 full days, and the
            # part of the last day before the truck comes
            weights = np.array([1.0 - pickup_fraction] + [1.0] * (k - 1) + [pickup_fraction])
            m = rate * (prof[:, wd] * weights).sum(axis=1)
            v = cv2 * rate**2 * ((prof[:, wd] * weights) ** 2).sum(axis=1)
            probs.append(exceed_probability(m, v))
        p = np.mean(probs, axis=0) if k % 7 else probs[0]
        chosen = np.where(p < alpha, k, chosen)
    return chosen


def assign_phases(intervals: IntArray, xy_km: FloatArray, depot_km: FloatArray) -> IntArray:
    """A visit day (phase ``0..k-1``) per bin: the bins of each interval are split into
    ``k`` sectors around the depot of (nearly) equal size, so each day's workload is balanced
    and each day's bins of one interval lie together."""
    phases = np.zeros(intervals.shape[0], dtype=np.int64)
    angle = np.arctan2(xy_km[:, 1] - depot_km[1], xy_km[:, 0] - depot_km[0])
    for k in np.unique(intervals).tolist():
        members = np.flatnonzero(intervals == k)
        order = members[np.argsort(angle[members], kind="stable")]
        phases[order] = (np.arange(order.size) * k) // max(order.size, 1)
    return phases


class StaticBaseline(Policy):
    """The strong static plan: per-bin intervals tuned from history, balanced visit days,
    every scheduled bin must-visit, routes solved daily with the shared setup."""

    name = "static"

    def __init__(
        self,
        model: Forecaster,
        router: Router,
        *,
        alpha: float,
        xy_km: FloatArray,
        depot_km: FloatArray,
        days: range,
    ) -> None:
        """Tune intervals for overflow tolerance ``alpha`` over the plan period ``days``."""
        self.alpha = alpha
        self.router = router
        self.model = model
        self.intervals = tune_intervals(
            model, alpha, days=days, pickup_fraction=router.pickup_fraction
        )
        self.phases = assign_phases(self.intervals, xy_km, depot_km)

    def due(self, day: int) -> IntArray:
        """Bins scheduled on ``day``."""
        return np.flatnonzero((day - self.phases) % self.intervals == 0).astype(np.int64)

    def plan(self, obs: Observation) -> Plan:
        """Route every bin scheduled today (all must-visit)."""
        bins = self.due(obs.day)
        expected = self.model.rate[bins] * self.intervals[bins]
        return self.router.route(bins, expected, [None] * int(bins.size))


class _Selecting(Policy):
    """Shared selection: must-go bins, and optional bins with a prize (metres)."""

    def __init__(
        self, router: Router, *, prize_m: float, min_value: float, fill_from: float
    ) -> None:
        self.router = router
        self.prize_m = prize_m
        self.min_value = min_value
        self.fill_from = fill_from

    def fill_value(self, level: FloatArray) -> FloatArray:
        """Prize weight for what a bin holds: 0 at ``fill_from``, 1 when full."""
        span = max(1.0 - self.fill_from, 1e-9)
        out: FloatArray = np.clip((level - self.fill_from) / span, 0.0, 1.0)
        return out

    def select_bins(
        self, level: FloatArray, value: FloatArray, must: npt.NDArray[np.bool_]
    ) -> Plan:
        """Route the ``must`` bins and, as optional ones with a prize of ``prize_m x value``,
        those with ``value >= min_value``; ``level`` is each bin's expected level at pickup."""
        optional = ~must & (value >= self.min_value)
        bins = np.flatnonzero(must | optional).astype(np.int64)
        penalties: list[float | None] = [
            None if must[b] else self.prize_m * float(value[b]) for b in bins.tolist()
        ]
        return self.router.route(bins, level[bins], penalties)


class DynamicPolicy(_Selecting):
    """Kernos dispatch: a per-bin level estimate (the forecast as prior, readings as
    measurements); the overflow risk if a bin is skipped today, from the forecast's level
    distribution; must-go above risk ``theta``; every other bin optional with a prize of
    ``prize_m`` times the larger of its risk of overflowing if not emptied within
    ``lookahead`` days (it will need a visit soon) and what it holds above ``fill_from``
    (emptying it while a truck is near saves a trip later); prize-collecting routing then
    chooses bins and routes together."""

    name = "kernos"

    def __init__(
        self,
        model: Forecaster,
        router: Router,
        *,
        theta: float,
        noise_sigma: float,
        prize_m: float = PRIZE_M,
        lookahead: int = 2,
        fill_from: float = FILL_FROM,
        min_value: float = 0.05,
    ) -> None:
        """``theta``: risk threshold; ``noise_sigma``: the sensors' reading noise."""
        super().__init__(router, prize_m=prize_m, min_value=min_value, fill_from=fill_from)
        if not 0 < theta < 1:
            raise InvalidInput("theta must be in (0, 1)")
        self.theta = theta
        self.model = model
        self.lookahead = max(lookahead, 1)
        self.noise_var = noise_sigma**2
        n = model.n_bins
        self.mean = np.zeros(n)
        self.var = np.zeros(n)
        self.recent = np.full(n, np.nan)
        self._today: tuple[FloatArray, FloatArray] | None = None
        self._start: FloatArray | None = None
        self._emptied = np.zeros(n, dtype=bool)

    def _update(self, obs: Observation) -> None:
        seen = np.isfinite(obs.level) & (obs.count > 0)
        r = self.noise_var / np.maximum(obs.count, 1)
        gain = np.where(seen, self.var / (self.var + r), 0.0)
        z = np.where(seen, obs.level, 0.0)
        self.mean = self.mean + gain * (z - self.mean)
        self.var = (1.0 - gain) * self.var
        if self._start is not None:
            # yesterday's fill as the sensors saw it (NaN where the bin was emptied or unseen)
            self.recent = np.where(self._emptied | ~seen, np.nan, self.mean - self._start)

    def risks(self, day: int) -> tuple[FloatArray, list[FloatArray]]:
        """Expected level at today's pickup, and per ``h`` in 1..lookahead the risk of
        overflowing before a pickup ``h`` days from now if the bin is not emptied earlier."""
        f = self.router.latest_fraction
        means, variances = [], []
        for h in range(self.lookahead + 2):
            m, v = self.model.predict(self.mean, day, h, recent=self.recent, level_var=self.var)
            means.append(m)
            variances.append(v)
        risks = [
            exceed_probability(
                means[h] + f * (means[h + 1] - means[h]),
                variances[h] + f * f * (variances[h + 1] - variances[h]),
            )
            for h in range(1, self.lookahead + 1)
        ]
        self._today = (means[1] - means[0], variances[1] - variances[0])
        typical = self.router.pickup_fraction
        return means[0] + typical * (means[1] - means[0]), risks

    def plan(self, obs: Observation) -> Plan:
        """Estimate levels, score risk, pick and route."""
        self._update(obs)
        level, risks = self.risks(obs.day)
        must = risks[0] > self.theta
        return self.select_bins(level, np.maximum(risks[-1], self.fill_value(level)), must)

    def collected(self, obs: Observation, plan: Plan) -> None:
        """Advance the estimate to tomorrow's shift start, emptied bins from their pickup."""
        assert self._today is not None
        fill, fill_var = self._today
        start = self.mean.copy()
        self.mean = self.mean + fill
        self.var = self.var + fill_var
        emptied = np.zeros(self.mean.shape[0], dtype=bool)
        for route in plan.routes:
            for b, hour in zip(route.bins, route.arrival_h, strict=True):
                after = self.router.left_after(hour)
                self.mean[b] = after * fill[b]
                self.var[b] = after * after * fill_var[b]
                emptied[b] = True
        self._start = start
        self._emptied = emptied


class SensorsNoForecast(_Selecting):
    """The bracket between: the latest reading is the level (no model, no forecast); bins at
    or above ``threshold`` must go, others are optional with the prize Kernos gives for what
    a bin holds."""

    name = "sensors"

    def __init__(
        self,
        router: Router,
        *,
        threshold: float,
        prize_m: float = PRIZE_M,
        fill_from: float = FILL_FROM,
        min_value: float = 0.05,
    ) -> None:
        """``threshold``: the reading at which a bin must go."""
        super().__init__(router, prize_m=prize_m, min_value=min_value, fill_from=fill_from)
        self.threshold = threshold
        self.last = np.zeros(router.volume_l.shape[0])

    def plan(self, obs: Observation) -> Plan:
        """Threshold on the latest reading."""
        self.last = np.where(np.isfinite(obs.level), obs.level, self.last)
        return self.select_bins(self.last, self.fill_value(self.last), self.last >= self.threshold)

    def collected(self, obs: Observation, plan: Plan) -> None:
        """An emptied bin reads empty until its next reading."""
        self.last[list(plan.visited)] = 0.0


class Oracle(_Selecting):
    """The bracket above: knows the true level and the true fills of the coming days;
    must-go when skipping today would overflow before tomorrow's pickup (less ``margin``);
    optional bins are valued like Kernos's, with certain knowledge of overflow."""

    name = "oracle"

    def __init__(
        self,
        router: Router,
        *,
        margin: float = 0.0,
        prize_m: float = PRIZE_M,
        lookahead: int = 2,
        fill_from: float = FILL_FROM,
    ) -> None:
        """``margin``: fraction of capacity kept free as a safety margin."""
        super().__init__(router, prize_m=prize_m, min_value=0.05, fill_from=fill_from)
        self.margin = margin
        self.lookahead = lookahead

    def plan(self, obs: Observation) -> Plan:
        """Must-go exactly where skipping would overflow."""
        fills = obs.true_fill
        if obs.true_level is None or fills is None or fills.shape[0] < self.lookahead + 1:
            raise InvalidInput("the oracle needs the true levels and the coming days' fills")
        f = self.router.latest_fraction
        limit = 1.0 - self.margin
        skip = obs.true_level + fills[0] + f * fills[1]
        later = obs.true_level + fills[: self.lookahead].sum(axis=0) + f * fills[self.lookahead]
        level = obs.true_level + self.router.pickup_fraction * fills[0]
        value = np.maximum((later > limit).astype(np.float64), self.fill_value(level))
        return self.select_bins(level, value, skip > limit)
