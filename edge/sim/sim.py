"""The true fill process of the simulated city, with common random numbers.

Everything random is drawn up front for the whole horizon from seeded streams
(``numpy.random.default_rng([seed, stream, part])``) that no policy can touch: the daily fill
increment of every (day, bin), local events, hazardous-waste incidents. Two simulations with
the same city and seed therefore see the same waste arriving whatever they empty; only the
*level* (what is still in the bin) depends on the policy. Each stream is drawn in one call in
(day, bin) order, so a shorter horizon is a prefix of a longer one.

A day: waste arrives uniformly between ``fill_start_h`` and ``fill_end_h``; ``empty(bins,
hour=...)`` removes what a bin holds at that hour; ``step_day()`` closes the day, counts a
bin-day of overflow for every bin whose level exceeded 1.0 at any time, and returns a
:class:`DayRecord` from which the sensor model reads the levels hour by hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kernos.edge.errors import EdgeInputError
from kernos.edge.sim.city import City
from kernos.edge.sim.params import CityParams

STREAM_FILL = 2
"""Daily gamma noise of every (day, bin)."""
STREAM_EVENTS = 3
"""Local events: part 0 counts per day, part 1 centres."""
STREAM_HAZARD = 4
"""Hazardous incidents: part 0 whether one starts on a (day, bin), part 1 at which hour."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_DAYS = 400
"""Horizon drawn when none is given: warm-up plus a long demo, days."""


def season_factor(params: CityParams, days: IntArray) -> FloatArray:
    """Yearly fill multiplier per simulation day (mean 1 over a year)."""
    doy = (params.start_day_of_year + days) % 365
    return 1.0 + params.season_amplitude * np.cos(2 * np.pi * (doy - params.season_peak_day) / 365)


def weekday_of(params: CityParams, day: int) -> int:
    """Weekday (0 = Monday) of simulation day ``day``."""
    return (params.start_weekday + day) % 7


@dataclass(frozen=True, eq=False)
class FillProcess:
    """The policy-independent randomness of one (city, seed, horizon), drawn up front."""

    expected: FloatArray
    """Mean fill per (day, bin) from rate, weekday profile and season, shape (days, n)."""
    boost: FloatArray
    """Extra fill from local events per (day, bin), multiple of normal fill, shape (days, n)."""
    increments: FloatArray
    """The fill that arrives per (day, bin), fraction of capacity, shape (days, n)."""
    hazard_start_h: FloatArray
    """Hour a hazardous incident starts per (day, bin), NaN where none, shape (days, n)."""
    events: list[tuple[int, float, float]]
    """Local events as (start day, x km, y km)."""

    @classmethod
    def draw(cls, city: City, params: CityParams, seed: int, *, days: int) -> FillProcess:
        """Draw the horizon's fill, events and incidents for ``seed``."""
        n = city.n_bins
        day_index = np.arange(days, dtype=np.int64)
        weekday = (params.start_weekday + day_index) % 7
        profile = np.array([c.weekday_factors for c in params.classes], dtype=np.float64)
        profile = profile / profile.mean(axis=1, keepdims=True)
        expected = (
            city.mean_rate[None, :]
            * profile[city.bin_class][:, weekday].T
            * season_factor(params, day_index)[:, None]
        )
        shape = 1.0 / params.daily_fill_cv**2
        noise = np.random.default_rng([seed, STREAM_FILL]).gamma(shape, 1.0 / shape, (days, n))

        counts = np.random.default_rng([seed, STREAM_EVENTS, 0]).poisson(
            params.event_rate_per_day, days
        )
        size = np.array([params.area_width_km, params.area_height_km])
        centres = np.random.default_rng([seed, STREAM_EVENTS, 1]).uniform(
            0.0, size, (int(counts.sum()), 2)
        )
        boost = np.zeros((days, n))
        events: list[tuple[int, float, float]] = []
        starts = np.repeat(day_index, counts)
        for start, centre in zip(starts.tolist(), centres, strict=True):
            near = np.hypot(*(city.xy_km - centre).T) <= params.event_radius_km
            boost[start : start + params.event_days, near] += params.event_boost
            events.append((int(start), float(centre[0]), float(centre[1])))

        starts_hazard = (
            np.random.default_rng([seed, STREAM_HAZARD, 0]).random((days, n))
            < params.hazard_rate_per_bin_day
        )
        hours = np.random.default_rng([seed, STREAM_HAZARD, 1]).uniform(0.0, 24.0, (days, n))
        return cls(
            expected=expected,
            boost=boost,
            increments=expected * noise * (1.0 + boost),
            hazard_start_h=np.where(starts_hazard, hours, np.nan),
            events=events,
        )


@dataclass(frozen=True, eq=False)
class DayRecord:
    """What happened in one simulated day, enough to replay any bin's level hour by hour."""

    day: int
    """Simulation day (0 is the first)."""
    weekday: int
    """0 = Monday."""
    fill_start_h: float
    """Hour waste starts arriving."""
    fill_end_h: float
    """Hour waste stops arriving."""
    start_level: FloatArray
    """Level at 00:00, fraction of capacity, shape (n,)."""
    increment: FloatArray
    """Waste that arrived during the day, fraction of capacity, shape (n,)."""
    end_level: FloatArray
    """Level at 24:00, shape (n,)."""
    peak_level: FloatArray
    """Highest level during the day, shape (n,)."""
    empty_bins: IntArray
    """Bins emptied, in the order they were emptied (a bin may appear more than once)."""
    empty_hours: FloatArray
    """Hour of each emptying."""
    empty_levels: FloatArray
    """Level removed by each emptying (the fill at emptying), fraction of capacity."""
    hazard_from_h: FloatArray
    """Hour a hazard is present from, ``inf`` when none that day, shape (n,)."""
    hazard_to_h: FloatArray
    """Hour a hazard was removed by emptying, ``inf`` when it stayed, shape (n,)."""
    hazard_started: BoolArray
    """Bins where a new incident started today, shape (n,)."""

    @property
    def overflow(self) -> BoolArray:
        """Bins whose level exceeded 1.0 at some time today."""
        return self.peak_level > 1.0

    def level_at(self, hours: FloatArray) -> FloatArray:
        """True level at each of ``hours`` for every bin, shape (len(hours), n)."""
        span = self.fill_end_h - self.fill_start_h
        arrived = np.clip((hours - self.fill_start_h) / span, 0.0, 1.0)
        level = self.start_level[None, :] + arrived[:, None] * self.increment[None, :]
        for row, hour in enumerate(hours.tolist()):
            done = self.empty_hours <= hour
            np.subtract.at(level[row], self.empty_bins[done], self.empty_levels[done])
        return level

    def hazard_at(self, hours: FloatArray) -> BoolArray:
        """Whether each bin holds hazardous waste at each of ``hours``, shape (len(hours), n)."""
        h = hours[:, None]
        return (self.hazard_from_h[None, :] <= h) & (h < self.hazard_to_h[None, :])


@dataclass
class Simulation:
    """The true state of every bin, advanced one day at a time by a collection policy.

    ``Simulation(city, params, seed)``; then per day: look at readings, call
    :meth:`empty` for the bins collected (with the hour each is reached), then
    :meth:`step_day`. Bins start empty on day 0; discard ``params.warmup_days`` before
    counting (:meth:`summary` does).
    """

    city: City
    params: CityParams
    seed: int
    days: int = DEFAULT_DAYS
    fill: FillProcess = field(init=False)
    day: int = field(init=False, default=0)
    history: list[DayRecord] = field(init=False, default_factory=list)
    _level: FloatArray = field(init=False)
    _hazard_left: IntArray = field(init=False)
    _today: dict[str, list[float]] = field(init=False, default_factory=dict)
    _hazard_from: FloatArray = field(init=False)
    _hazard_to: FloatArray = field(init=False)
    _peak: FloatArray = field(init=False)
    _removed: FloatArray = field(init=False)
    _last_empty: FloatArray = field(init=False)
    _started_today: BoolArray = field(init=False)

    def __post_init__(self) -> None:
        if self.days < 1:
            raise EdgeInputError("a simulation needs a horizon of at least one day")
        self.fill = FillProcess.draw(self.city, self.params, self.seed, days=self.days)
        n = self.city.n_bins
        self._level = np.zeros(n)
        self._hazard_left = np.zeros(n, dtype=np.int64)
        self._begin_day()

    @property
    def level(self) -> FloatArray:
        """True level of every bin at 00:00 of the current day (a copy)."""
        return self._level.copy()

    @property
    def hazard(self) -> BoolArray:
        """Bins with a hazardous incident today (from the hour it starts) not yet removed."""
        return np.isfinite(self._hazard_from) & ~np.isfinite(self._hazard_to)

    def level_at(self, hour: float) -> FloatArray:
        """True level of every bin at ``hour`` of the current day, given today's emptyings."""
        return self._level + self._arrived(hour) * self._increment() - self._removed

    def empty(
        self, bin_ids: npt.ArrayLike, *, hour: float | npt.ArrayLike | None = None
    ) -> FloatArray:
        """Empty ``bin_ids`` at ``hour`` (one per bin or one for all; default: shift start).

        Returns the level each one held (its fill at emptying, fraction of capacity); multiply
        by ``city.volume_l`` for litres. A bin emptied twice in one day must be emptied in time
        order; emptying also removes a hazardous incident present at that hour.
        """
        self._check_horizon()
        bins = np.asarray(bin_ids, dtype=np.int64).reshape(-1)
        if bins.size and (bins.min() < 0 or bins.max() >= self.city.n_bins):
            raise EdgeInputError(f"bin ids must be in 0..{self.city.n_bins - 1}")
        when = np.broadcast_to(
            np.asarray(self.params.shift_start_h if hour is None else hour, dtype=np.float64),
            bins.shape,
        )
        if when.size and (when.min() < 0 or when.max() > 24):
            raise EdgeInputError("emptying hours must be within the day, 0..24")
        collected = np.empty(bins.size)
        for i, (b, t) in enumerate(zip(bins.tolist(), when.tolist(), strict=True)):
            if t < self._last_empty[b]:
                raise EdgeInputError(f"bin {b} emptied at {t} h after an emptying at a later hour")
            held = self._level[b] + self._arrived(t) * self._increment()[b] - self._removed[b]
            collected[i] = held
            self._removed[b] += held
            self._last_empty[b] = t
            self._peak[b] = max(self._peak[b], held)
            if self._hazard_from[b] <= t and not math.isfinite(self._hazard_to[b]):
                self._hazard_to[b] = t
            self._today["bins"].append(b)
            self._today["hours"].append(t)
            self._today["levels"].append(held)
        return collected

    def step_day(self) -> DayRecord:
        """Close the current day, record it, and move to the next one."""
        self._check_horizon()
        increment = self._increment()
        end = self._level + increment - self._removed
        present = np.isfinite(self._hazard_from)
        cleared = np.isfinite(self._hazard_to)
        record = DayRecord(
            day=self.day,
            weekday=weekday_of(self.params, self.day),
            fill_start_h=self.params.fill_start_h,
            fill_end_h=self.params.fill_end_h,
            start_level=self._level,
            increment=increment,
            end_level=end,
            peak_level=np.maximum(self._peak, end),
            empty_bins=np.array(self._today["bins"], dtype=np.int64),
            empty_hours=np.array(self._today["hours"], dtype=np.float64),
            empty_levels=np.array(self._today["levels"], dtype=np.float64),
            hazard_from_h=self._hazard_from,
            hazard_to_h=self._hazard_to,
            hazard_started=self._started_today,
        )
        self.history.append(record)
        left = np.where(present & ~cleared, self._hazard_left - 1, 0)
        self._hazard_left = np.maximum(left, 0)
        self._level = end
        self.day += 1
        if self.day < self.days:
            self._begin_day()
        return record

    def run(self, days: int) -> list[DayRecord]:
        """Step ``days`` days without emptying anything (a do-nothing policy)."""
        return [self.step_day() for _ in range(days)]

    def summary(self, *, from_day: int | None = None) -> dict[str, float]:
        """Totals over the recorded days from ``from_day`` (default: after the warm-up)."""
        start = self.params.warmup_days if from_day is None else from_day
        days = [r for r in self.history if r.day >= start]
        n = self.city.n_bins
        fills = np.concatenate([r.empty_levels for r in days]) if days else np.empty(0)
        litres = sum(float((r.empty_levels * self.city.volume_l[r.empty_bins]).sum()) for r in days)
        return {
            "days": float(len(days)),
            "overflow_bin_days": float(sum(int(r.overflow.sum()) for r in days)),
            "overflow_rate": (sum(int(r.overflow.sum()) for r in days) / (n * len(days)))
            if days
            else 0.0,
            "collections": float(fills.size),
            "mean_fill_at_emptying": float(fills.mean()) if fills.size else math.nan,
            "collected_m3": litres / 1000.0,
            "hazard_incidents": float(sum(int(r.hazard_started.sum()) for r in days)),
            "hazard_bin_days": float(sum(int(np.isfinite(r.hazard_from_h).sum()) for r in days)),
        }

    # --- internals

    def _check_horizon(self) -> None:
        if self.day >= self.days:
            raise EdgeInputError(
                f"the simulation's horizon of {self.days} days is used up; "
                "create it with a larger days=..."
            )

    def _increment(self) -> FloatArray:
        return self.fill.increments[self.day]

    def _arrived(self, hour: float) -> float:
        span = self.params.fill_end_h - self.params.fill_start_h
        return min(max((hour - self.params.fill_start_h) / span, 0.0), 1.0)

    def _begin_day(self) -> None:
        n = self.city.n_bins
        start_h = self.fill.hazard_start_h[self.day]
        carried = self._hazard_left > 0
        new = ~carried & np.isfinite(start_h)
        self._started_today = new
        self._hazard_left = np.where(new, self.params.hazard_max_days, self._hazard_left)
        self._hazard_from = np.where(carried, 0.0, np.where(new, start_h, np.inf))
        self._hazard_to = np.full(n, np.inf)
        self._peak = self._level.copy()
        self._removed = np.zeros(n)
        self._last_empty = np.full(n, -np.inf)
        self._today = {"bins": [], "hours": [], "levels": []}
