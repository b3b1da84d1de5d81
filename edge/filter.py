"""The edge pre-filter: drop faulty readings, forward only meaningful changes.

Per bin, :class:`EdgeFilter` keeps a noise-robust estimate of the fill level (an alpha-beta
tracker: level and fill rate, so the estimate does not lag behind a filling bin) and what it
last forwarded. A reading is first checked and dropped, with its reason counted, when it is

- ``malformed`` (not a reading at all: missing or unknown fields, wrong types) — these are
  also handed back (:attr:`FilterOutput.rejected`) so the caller can dead-letter them;
- ``nan`` (a value that is not finite) or ``out_of_range`` (level, temperature, VOC, bin id);
- ``duplicate`` (same bin and time stamp as the previous reading of the bin);
- ``out_of_order`` (older than the previous reading of the bin);
- ``stale`` (more than ``max_lag_s`` behind the newest reading of any bin).

Every other reading updates the bin's estimate, and is forwarded when the kernel's picture of
the bin would otherwise be wrong:

- ``crossing``: the declared fill band changed (``ok`` → ``alert`` → ``must_go`` and back).
  Hysteresis: a band is declared once the estimate is within ``enter_margin`` *below* its
  threshold (early rather than late: a late alert is the costly error) and left only when
  the estimate falls ``leave_margin`` below it, so noise does not flap it;
- ``jump``: the estimate moved ``jump`` or more since the last forwarded level;
- ``step`` (instead of ``jump``): ``step_confirm`` readings in a row lie ``step_delta`` or
  more from the estimate on the same side — the bin was emptied (or filled at once), and the
  estimate restarts from them; likewise after ``restart_after_s`` of silence. A single wild
  reading is ignored as a spike;
- ``hazard`` / ``hazard_cleared``: the hazard classifier suspects hazardous waste, or has not
  for ``hazard_clear`` readings in a row;
- ``heartbeat``: nothing was forwarded for ``heartbeat_s``, so the kernel knows the sensor
  lives.

Rate limit: a bin forwards at most once per ``min_interval_s`` (hazards excepted). A change
that is due meanwhile is not lost: it is compared against what was last *forwarded*, so it
goes out with the first reading after the interval (:attr:`FilterStats.deferred` counts them).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kernos.edge.errors import EdgeConfigError
from kernos.edge.hazard import HazardClassifier, RuleHazard
from kernos.edge.sim.params import CityParams
from kernos.edge.sim.readings import (
    BANDS,
    FIELDS,
    LEVEL_RANGE,
    OPTIONAL_FIELDS,
    TEMP_RANGE,
    VOC_RANGE,
    Reading,
)

__all__ = [
    "DROP_REASONS",
    "EdgeFilter",
    "FilterOutput",
    "FilterParams",
    "FilterStats",
    "Forward",
    "Rejected",
]

DROP_REASONS: Final = ("malformed", "nan", "out_of_range", "duplicate", "out_of_order", "stale")
"""Why a reading is dropped, in the order they are checked."""

_NUMBERS: Final = ("level", "temp_c", "voc_ppm", "ts")


@dataclass(frozen=True, kw_only=True, slots=True)
class FilterParams:
    """The filter's tuning; the defaults were measured on the simulated city (docs/demo.md)."""

    alert_level: float = 0.75
    """The alert threshold, fraction of capacity (``CityParams.alert_level``)."""
    must_go_level: float = 0.90
    """The must-go threshold (``CityParams.must_go_level``)."""
    enter_margin: float = 0.06
    """A band is declared when the estimate is this close below its threshold."""
    leave_margin: float = 0.15
    """A band is left when the estimate is this far below its threshold."""
    jump: float = 0.10
    """Forward when the estimate moved this much since the last forwarded level."""
    step_delta: float = 0.25
    """A reading this far from the estimate is a spike, or the start of a step..."""
    step_confirm: int = 2
    """...confirmed by this many such readings in a row on the same side."""
    alpha: float = 0.3
    """Tracker gain on the level (1: trust each reading, 0: ignore them)."""
    beta: float = 0.05
    """Tracker gain on the fill rate (0: plain exponential smoothing)."""
    lead_h: float = 0.0
    """Bands are entered on the level predicted this many hours ahead at the estimated fill
    rate, so a fast-filling bin is declared before it crosses rather than after."""
    active_from_h: float = 0.0
    """Hour of day (of the readings' time stamps) when waste starts arriving..."""
    active_to_h: float = 24.0
    """...and when it stops: the tracker's fill rate counts only these hours, so a quiet night
    neither drags the rate down nor lets the prediction run ahead."""
    restart_after_s: float = 6 * 3_600.0
    """After a silence this long (a dead sensor back) the estimate restarts from the reading."""
    max_rate_per_h: float = 0.2
    """Fill rates the tracker may believe, 0..this, fraction of capacity per hour."""
    hazard_clear: int = 3
    """Normal readings in a row that clear a suspected hazard."""
    heartbeat_s: float = 86_400.0
    """Forward at least one reading per bin this often, seconds."""
    min_interval_s: float = 1_800.0
    """Rate limit: at most one forward per bin per this many seconds (hazards excepted)."""
    max_lag_s: float = 6 * 3_600.0
    """A reading this far behind the newest one seen is stale, seconds."""
    n_bins: int | None = None
    """Bin ids must be below this, when given."""

    @classmethod
    def for_city(cls, city: CityParams, **overrides: Any) -> FilterParams:
        """Thresholds, fill hours and bin count from the simulated city's parameters."""
        values: dict[str, Any] = {
            "alert_level": city.alert_level,
            "must_go_level": city.must_go_level,
            "active_from_h": city.fill_start_h,
            "active_to_h": city.fill_end_h,
            "n_bins": city.n_bins,
        }
        return cls(**(values | overrides))

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.alert_level < self.must_go_level:
            problems.append("need 0 < alert_level < must_go_level")
        if not 0 <= self.enter_margin < self.leave_margin:
            problems.append("need 0 <= enter_margin < leave_margin")
        if not 0 < self.alpha <= 1 or not 0 <= self.beta < 1:
            problems.append("need 0 < alpha <= 1 and 0 <= beta < 1")
        if min(self.jump, self.step_delta) <= 0 or self.step_confirm < 1 or self.hazard_clear < 1:
            problems.append("jump, step_delta, step_confirm and hazard_clear must be positive")
        if min(self.heartbeat_s, self.max_lag_s, self.restart_after_s) <= 0 or (
            self.min_interval_s < 0
        ):
            problems.append("heartbeat_s and max_lag_s must be positive, min_interval_s >= 0")
        if not 0 <= self.active_from_h < self.active_to_h <= 24:
            problems.append("need 0 <= active_from_h < active_to_h <= 24")
        if self.n_bins is not None and self.n_bins < 1:
            problems.append("n_bins must be positive")
        if problems:
            raise EdgeConfigError("invalid filter parameters: " + "; ".join(problems))


@dataclass(frozen=True, kw_only=True, slots=True)
class Forward:
    """A reading the filter forwards, with its estimate, band, hazard flag and reasons."""

    bin: int
    ts: float
    level: float
    """The estimated fill level (smoothed), fraction of capacity."""
    raw_level: float
    """The level the sensor measured."""
    temp_c: float
    voc_ppm: float
    band: str
    """``ok``, ``alert`` or ``must_go`` (see :data:`~kernos.edge.sim.readings.BANDS`)."""
    hazard: bool
    reasons: tuple[str, ...]

    def payload(self) -> Reading:
        """The ``sensor.bin.fill`` event data (a valid reading with the edge's fields)."""
        return Reading(
            bin=self.bin,
            level=round(min(max(self.level, LEVEL_RANGE[0]), LEVEL_RANGE[1]), 4),
            temp_c=round(self.temp_c, 2),
            voc_ppm=round(self.voc_ppm, 3),
            ts=self.ts,
            raw_level=round(self.raw_level, 4),
            band=self.band,
            hazard=self.hazard,
            reasons=list(self.reasons),
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    """A malformed reading and what is wrong with it."""

    reading: Any
    reason: str


@dataclass(slots=True)
class FilterStats:
    """Counts since the filter was built."""

    raw: int = 0
    """Readings offered."""
    dropped: Counter[str] = field(default_factory=Counter)
    """Dropped readings by reason (:data:`DROP_REASONS`)."""
    forwarded: int = 0
    """Readings forwarded."""
    reasons: Counter[str] = field(default_factory=Counter)
    """Forwarded readings by reason (one reading may have several)."""
    deferred: int = 0
    """Readings with a change due that the rate limit held back."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "raw": self.raw,
            "dropped": dict(sorted(self.dropped.items())),
            "forwarded": self.forwarded,
            "reasons": dict(sorted(self.reasons.items())),
            "deferred": self.deferred,
        }


@dataclass(frozen=True, slots=True)
class FilterOutput:
    """What one batch produced: the readings to forward, in order, and the malformed ones."""

    forwards: list[Forward]
    rejected: list[Rejected]


class _Bin:
    """One bin's state."""

    __slots__ = (
        "band",
        "est",
        "hazard",
        "hazard_calm",
        "last_ts",
        "rate",
        "sent_band",
        "sent_hazard",
        "sent_level",
        "sent_ts",
        "step_n",
        "step_sign",
        "step_sum",
    )

    def __init__(self) -> None:
        self.est = math.nan  # no estimate before the first reading
        self.rate = 0.0  # per hour
        self.last_ts = -math.inf
        self.band = 0
        self.hazard = False
        self.hazard_calm = 0
        self.step_n = 0
        self.step_sign = 0
        self.step_sum = 0.0
        self.sent_ts = -math.inf
        self.sent_level = math.nan
        self.sent_band = -1  # nothing forwarded yet
        self.sent_hazard = False


class EdgeFilter:
    """Per-bin pre-filter of sensor readings (see the module docstring).

    Feed it readings in arrival order with :meth:`process` (mappings, validated) or
    :meth:`process_columns` (plain numbers, the fast path); each returns what to forward.
    Not thread-safe: one filter per reading stream.
    """

    def __init__(
        self, params: FilterParams | None = None, *, hazard: HazardClassifier | None = None
    ) -> None:
        self.params = params or FilterParams()
        self.hazard = hazard or RuleHazard()
        self.stats = FilterStats()
        self._bins: dict[int, _Bin] = {}
        self._newest = -math.inf
        p = self.params
        self._enter = (p.alert_level - p.enter_margin, p.must_go_level - p.enter_margin)
        self._leave = (p.alert_level - p.leave_margin, p.must_go_level - p.leave_margin)
        self._active_per_day = p.active_to_h - p.active_from_h

    def _active_h(self, t: float) -> float:
        """Active hours from time 0 to ``t`` (seconds)."""
        p = self.params
        days, seconds = divmod(t, 86_400.0)
        hour = seconds / 3600.0
        into = min(max(hour, p.active_from_h), p.active_to_h) - p.active_from_h
        return days * self._active_per_day + into

    def process(self, readings: Iterable[Any]) -> FilterOutput:
        """Check and filter readings given as mappings (``bin``, ``level``, ``temp_c``,
        ``voc_ppm``, ``ts``); malformed ones come back in :attr:`FilterOutput.rejected`."""
        rejected: list[Rejected] = []
        columns: tuple[list[Any], ...] = ([], [], [], [], [])
        bins, ts, level, temp, voc = columns
        for reading in readings:
            problems = _shape_problems(reading)
            if problems:
                self.stats.raw += 1
                self.stats.dropped["malformed"] += 1
                rejected.append(Rejected(reading, "; ".join(problems)))
                continue
            bins.append(reading["bin"])
            ts.append(reading["ts"])
            level.append(reading["level"])
            temp.append(reading["temp_c"])
            voc.append(reading["voc_ppm"])
        return FilterOutput(self.process_columns(bins, ts, level, temp, voc), rejected)

    def process_columns(
        self,
        bins: Sequence[int],
        ts: Sequence[float],
        level: Sequence[float],
        temp_c: Sequence[float],
        voc_ppm: Sequence[float],
    ) -> list[Forward]:
        """Filter readings given column-wise (equal lengths, arrival order)."""
        suspects = self.hazard.suspects(level, temp_c, voc_ppm)
        out: list[Forward] = []
        for row in zip(bins, ts, level, temp_c, voc_ppm, suspects, strict=True):
            forward = self._one(*row)
            if forward is not None:
                out.append(forward)
        return out

    def _drop(self, reason: str) -> None:
        self.stats.dropped[reason] += 1

    def _one(
        self, b: int, t: float, z: float, temp: float, voc: float, suspect: bool
    ) -> Forward | None:
        p = self.params
        self.stats.raw += 1
        if not (
            math.isfinite(z) and math.isfinite(temp) and math.isfinite(voc) and math.isfinite(t)
        ):
            self._drop("nan")
            return None
        if (
            not LEVEL_RANGE[0] <= z <= LEVEL_RANGE[1]
            or not TEMP_RANGE[0] <= temp <= TEMP_RANGE[1]
            or not VOC_RANGE[0] <= voc <= VOC_RANGE[1]
            or t < 0
            or b < 0
            or (p.n_bins is not None and b >= p.n_bins)
        ):
            self._drop("out_of_range")
            return None
        state = self._bins.get(b)
        if state is None:
            state = self._bins[b] = _Bin()
        if t == state.last_ts:
            self._drop("duplicate")
            return None
        if t < state.last_ts:
            self._drop("out_of_order")
            return None
        if t < self._newest - p.max_lag_s:
            self._drop("stale")
            return None
        if t > self._newest:
            self._newest = t

        stepped = False
        # -- the level estimate
        if state.est != state.est or t - state.last_ts > p.restart_after_s:
            # The first reading of the bin, or the first after a long silence: whatever the
            # tracker predicts across the gap is a guess, the reading is not.
            stepped = state.est == state.est
            state.est = z
            state.rate = 0.0
            state.step_n, state.step_sign, state.step_sum = 0, 0, 0.0
        else:
            dt_h = self._active_h(t) - self._active_h(state.last_ts)
            predicted = state.est + state.rate * dt_h
            residual = z - predicted
            if abs(residual) >= p.step_delta:
                sign = 1 if residual > 0 else -1
                if sign != state.step_sign:
                    state.step_sign, state.step_n, state.step_sum = sign, 0, 0.0
                state.step_n += 1
                state.step_sum += z
                if state.step_n >= p.step_confirm:
                    state.est = state.step_sum / state.step_n
                    state.rate = 0.0
                    state.step_n, state.step_sign, state.step_sum = 0, 0, 0.0
                    stepped = True
                else:
                    state.est = predicted  # a spike, so far: keep it out of the estimate
            else:
                state.step_n, state.step_sign, state.step_sum = 0, 0, 0.0
                state.est = predicted + p.alpha * residual
                if dt_h > 0:
                    rate = state.rate + p.beta * residual / dt_h
                    state.rate = 0.0 if rate < 0.0 else min(rate, p.max_rate_per_h)
        state.last_ts = t
        est = state.est

        # -- the band, with hysteresis
        band = state.band
        ahead = est
        if p.lead_h:
            ahead += state.rate * (self._active_h(t + p.lead_h * 3600.0) - self._active_h(t))
        while band < 2 and ahead >= self._enter[band]:
            band += 1
        while band > 0 and est < self._leave[band - 1]:
            band -= 1
        state.band = band

        # -- hazard
        hazard_changed = False
        if suspect:
            state.hazard_calm = 0
            if not state.hazard:
                state.hazard = hazard_changed = True
        elif state.hazard:
            state.hazard_calm += 1
            if state.hazard_calm >= p.hazard_clear:
                state.hazard = False
                hazard_changed = True

        # -- is it worth forwarding?
        reasons: list[str] = []
        if state.sent_band < 0:
            reasons.append("first")
        else:
            if band != state.sent_band:
                reasons.append("crossing")
            if abs(est - state.sent_level) >= p.jump:
                reasons.append("step" if stepped else "jump")
            if state.hazard != state.sent_hazard:
                reasons.append("hazard" if state.hazard else "hazard_cleared")
            if not reasons and t - state.sent_ts >= p.heartbeat_s:
                reasons.append("heartbeat")
        if not reasons:
            return None
        if t - state.sent_ts < p.min_interval_s and not hazard_changed:
            self.stats.deferred += 1
            return None
        state.sent_ts = t
        state.sent_level = est
        state.sent_band = band
        state.sent_hazard = state.hazard
        self.stats.forwarded += 1
        self.stats.reasons.update(reasons)
        return Forward(
            bin=b,
            ts=t,
            level=est,
            raw_level=z,
            temp_c=temp,
            voc_ppm=voc,
            band=BANDS[band],
            hazard=state.hazard,
            reasons=tuple(reasons),
        )


def _shape_problems(reading: Any) -> list[str]:
    """Structural problems only (fields and types): values are the filter's to judge."""
    if not isinstance(reading, Mapping):
        return [f"a reading must be an object, got {type(reading).__name__}"]
    problems = [f"missing field {k!r}" for k in sorted(FIELDS - reading.keys())]
    problems += [
        f"unknown field {k!r}"
        for k in sorted(set(reading.keys()) - FIELDS - OPTIONAL_FIELDS, key=str)
    ]
    value = reading.get("bin")
    if "bin" in reading and (isinstance(value, bool) or not isinstance(value, int)):
        problems.append(f"bin must be an integer id, got {type(value).__name__}")
    for name in _NUMBERS:
        value = reading.get(name)
        if name in reading and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"{name} must be a number, got {type(value).__name__}")
    return problems
