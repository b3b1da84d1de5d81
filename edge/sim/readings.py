"""The sensor model: true levels in, noisy and sometimes missing readings out.

A working sensor reports every ``reporting_interval_h`` hours: the level with Gaussian noise
(``noise_sigma``, clipped to 0..``reading_max_level``), the temperature (season, day-night
cycle, noise) and VOC (rising with the fill). A hazardous incident adds its signature to both.
A reading goes missing with probability ``missing_rate``; a sensor dies for
``dead_sensor_days`` days and sends nothing. All of this is drawn from seeded streams no
policy touches (dead sensors up front for the horizon, the rest per day), so two policies see
the same faults and the same noise; only the true level under the noise differs.

Readings become events on :data:`~kernos.edge.sim.TOPIC` as plain dicts
(:class:`Reading`); :func:`validate_reading` checks one that arrives from outside (edge, MQTT,
HTTP) and says what is wrong with it. numpy is imported only where arrays are made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from kernos.edge.errors import EdgeInputError
from kernos.edge.sim import TOPIC

if TYPE_CHECKING:
    from kernos.edge.sim.city import City
    from kernos.edge.sim.params import CityParams
    from kernos.edge.sim.sim import BoolArray, DayRecord, FloatArray

STREAM_DEAD = 5
"""Dead sensors: whether a sensor dies on a (day, bin), drawn for the horizon."""
STREAM_NOISE = 6
"""Per day ``[seed, STREAM_NOISE, day]``: level noise, missing readings, temperature, VOC."""

LEVEL_RANGE = (0.0, 1.5)
"""Accepted level values, fraction of capacity."""
TEMP_RANGE = (-50.0, 150.0)
"""Accepted temperatures, °C."""
VOC_RANGE = (0.0, 10_000.0)
"""Accepted VOC values, ppm."""

BANDS = ("ok", "alert", "must_go")
"""Fill bands an edge agent reports: below ``alert_level``, from it, from ``must_go_level``."""

__all__ = [
    "BANDS",
    "FIELDS",
    "OPTIONAL_FIELDS",
    "TOPIC",
    "Reading",
    "ReadingBatch",
    "SensorModel",
    "reading_problems",
    "validate_reading",
]


class Reading(TypedDict):
    """One sensor reading as an event payload on ``sensor.bin.fill``."""

    bin: int
    """Bin id (0-based index into the city's bins)."""
    level: float
    """Measured fill level, fraction of capacity (may exceed 1 for a pile above the rim)."""
    temp_c: float
    """Temperature inside the bin, °C."""
    voc_ppm: float
    """Volatile organic compounds, ppm."""
    ts: float
    """Simulation time of the reading, seconds since 00:00 of day 0."""
    raw_level: NotRequired[float]
    """Set by an edge agent: the level the sensor measured (``level`` is then its smoothed
    estimate)."""
    band: NotRequired[str]
    """Set by an edge agent: the fill band it has declared (:data:`BANDS`), with hysteresis."""
    hazard: NotRequired[bool]
    """Set by an edge agent: whether it suspects hazardous waste in the bin."""
    reasons: NotRequired[list[str]]
    """Set by an edge agent: why it forwarded this reading (``crossing``, ``jump``, ...)."""


FIELDS = {"bin", "level", "temp_c", "voc_ppm", "ts"}
"""The fields every reading has."""
OPTIONAL_FIELDS = {"raw_level", "band", "hazard", "reasons"}
"""The fields an edge agent adds to the readings it forwards."""


def _number_problem(name: str, value: Any, low: float, high: float) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name} must be a number, got {type(value).__name__}"
    if not math.isfinite(value):
        return f"{name} must be finite, got {value}"
    if not low <= value <= high:
        return f"{name} must be within {low}..{high}, got {value}"
    return None


def reading_problems(obj: Any, *, n_bins: int | None = None) -> list[str]:
    """Everything wrong with ``obj`` as a :class:`Reading` (empty when it is valid)."""
    if not isinstance(obj, Mapping):
        return [f"a reading must be an object, got {type(obj).__name__}"]
    problems = [f"missing field {k!r}" for k in sorted(FIELDS - obj.keys())]
    problems += [
        f"unknown field {k!r}" for k in sorted(set(obj.keys()) - FIELDS - OPTIONAL_FIELDS, key=str)
    ]
    if "bin" in obj:
        b = obj["bin"]
        if isinstance(b, bool) or not isinstance(b, int):
            problems.append(f"bin must be an integer id, got {type(b).__name__}")
        elif b < 0 or (n_bins is not None and b >= n_bins):
            bound = "" if n_bins is None else f" below {n_bins}"
            problems.append(f"bin must be a non-negative id{bound}, got {b}")
    checks = {
        "level": LEVEL_RANGE,
        "temp_c": TEMP_RANGE,
        "voc_ppm": VOC_RANGE,
        "ts": (0.0, math.inf),
    }
    if "raw_level" in obj:
        checks["raw_level"] = LEVEL_RANGE
    for name, (low, high) in checks.items():
        if name in obj:
            problem = _number_problem(name, obj[name], low, high)
            if problem:
                problems.append(problem)
    return problems + _annotation_problems(obj)


def _annotation_problems(obj: Mapping[Any, Any]) -> list[str]:
    """What is wrong with the optional fields an edge agent adds."""
    problems = []
    if "band" in obj and obj["band"] not in BANDS:
        problems.append(f"band must be one of {', '.join(BANDS)}, got {obj['band']!r}")
    if "hazard" in obj and not isinstance(obj["hazard"], bool):
        problems.append(f"hazard must be true or false, got {type(obj['hazard']).__name__}")
    if "reasons" in obj:
        reasons = obj["reasons"]
        if not isinstance(reasons, list) or not all(
            isinstance(r, str) and 0 < len(r) <= 32 for r in reasons
        ):
            problems.append("reasons must be a list of short strings")
    return problems


def validate_reading(obj: Any, *, n_bins: int | None = None) -> Reading:
    """``obj`` as a :class:`Reading`; :class:`~kernos.edge.errors.EdgeInputError` listing every
    problem otherwise."""
    problems = reading_problems(obj, n_bins=n_bins)
    if problems:
        raise EdgeInputError(f"malformed {TOPIC} reading: " + "; ".join(problems))
    reading = Reading(
        bin=int(obj["bin"]),
        level=float(obj["level"]),
        temp_c=float(obj["temp_c"]),
        voc_ppm=float(obj["voc_ppm"]),
        ts=float(obj["ts"]),
    )
    if "raw_level" in obj:
        reading["raw_level"] = float(obj["raw_level"])
    if "band" in obj:
        reading["band"] = str(obj["band"])
    if "hazard" in obj:
        reading["hazard"] = bool(obj["hazard"])
    if "reasons" in obj:
        reading["reasons"] = list(obj["reasons"])
    return reading


@dataclass(frozen=True, eq=False)
class ReadingBatch:
    """One day of readings of every sensor, as arrays (rows: reporting times; columns: bins)."""

    day: int
    """Simulation day."""
    hours: FloatArray
    """Hour of day of each row."""
    present: BoolArray
    """Whether the reading arrived (not missing, sensor not dead), shape (H, n)."""
    level: FloatArray
    """Measured level, NaN where absent, shape (H, n)."""
    temp_c: FloatArray
    """Measured temperature, NaN where absent, °C."""
    voc_ppm: FloatArray
    """Measured VOC, NaN where absent, ppm."""
    dead: BoolArray
    """Sensors dead all day, shape (n,)."""

    @property
    def ts(self) -> FloatArray:
        """Simulation time of each row, seconds since 00:00 of day 0."""
        return (self.day * 24.0 + self.hours) * 3600.0

    def events(self) -> list[Reading]:
        """The readings that arrived, in time order, as event payloads."""
        import numpy as np

        rows, bins = np.nonzero(self.present)
        return [
            Reading(bin=b, level=lv, temp_c=t, voc_ppm=v, ts=s)
            for b, lv, t, v, s in zip(
                bins.tolist(),
                np.round(self.level[rows, bins], 4).tolist(),
                np.round(self.temp_c[rows, bins], 2).tolist(),
                np.round(self.voc_ppm[rows, bins], 3).tolist(),
                self.ts[rows].tolist(),
                strict=True,
            )
        ]


class SensorModel:
    """Turns a simulated day's true levels into the readings the sensors would send."""

    def __init__(self, city: City, params: CityParams, seed: int, *, days: int) -> None:
        """Draw dead-sensor periods for ``days`` days; per-day noise is drawn on demand."""
        import numpy as np

        self.city = city
        self.params = params
        self.seed = seed
        self.days = days
        n = city.n_bins
        span = params.dead_sensor_days
        # a per-day death probability whose long-run dead fraction is dead_sensor_fraction
        p = 1.0 - (1.0 - params.dead_sensor_fraction) ** (1.0 / span)
        dies = np.random.default_rng([seed, STREAM_DEAD]).random((days, n)) < p
        total = np.vstack([np.zeros((1, n), dtype=np.int64), np.cumsum(dies, axis=0)])
        lagged = np.vstack([np.zeros((span, n), dtype=np.int64), total[:-span]])[: days + 1]
        self.dead: BoolArray = (total - lagged)[1:] > 0
        """Dead sensors per (day, bin), shape (days, n)."""

    def readings(self, record: DayRecord) -> ReadingBatch:
        """The readings of ``record``'s day."""
        import numpy as np

        p = self.params
        if not 0 <= record.day < self.days:
            raise EdgeInputError(f"day {record.day} is outside the sensor horizon of {self.days}")
        n = self.city.n_bins
        hours = np.arange(p.readings_per_day, dtype=np.float64) * p.reporting_interval_h
        shape = (hours.size, n)
        rng = np.random.default_rng([self.seed, STREAM_NOISE, record.day])
        z_level = rng.standard_normal(shape)
        missing = rng.random(shape) < p.missing_rate
        z_temp = rng.standard_normal(shape)
        z_voc = rng.standard_normal(shape)

        true = record.level_at(hours)
        hazard = record.hazard_at(hours)
        level = np.clip(true + p.noise_sigma * z_level, 0.0, p.reading_max_level)
        doy = (p.start_day_of_year + record.day) % 365
        season = math.cos(2 * math.pi * (doy - p.season_peak_day) / 365)
        temp = (
            p.temp_mean_c
            + p.temp_season_amp_c * season
            + p.temp_diurnal_amp_c * np.cos(2 * np.pi * (hours - 15.0) / 24.0)[:, None]
            + p.hazard_temp_rise_c * hazard
            + p.temp_noise_c * z_temp
        )
        voc = np.maximum(
            p.voc_baseline_ppm
            + p.voc_per_fill_ppm * np.clip(true, 0.0, p.reading_max_level)
            + p.hazard_voc_ppm * hazard
            + p.voc_noise_ppm * z_voc,
            0.0,
        )
        dead = self.dead[record.day]
        present = ~missing & ~dead[None, :]
        return ReadingBatch(
            day=record.day,
            hours=hours,
            present=present,
            level=np.where(present, level, np.nan),
            temp_c=np.where(present, temp, np.nan),
            voc_ppm=np.where(present, voc, np.nan),
            dead=dead,
        )
