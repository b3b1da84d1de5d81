"""Where the edge agent's readings come from.

``sim``: the simulated city (:mod:`kernos.edge.sim`) on an accelerated clock. Its bins are
emptied by a simple stand-in for the kernel's routing (each bin at its own hour of the shift,
when its true level has reached ``empty_at``), so levels rise and fall as in a served city.
Readings come out one simulated reporting interval at a time, column-wise, in time order.

``mqtt`` is not available yet (issue 8 adds it later); asking for it is an error that says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from kernos.edge.errors import EdgeConfigError

if TYPE_CHECKING:
    from kernos.edge.sim.params import CityParams
    from kernos.edge.sim.readings import ReadingBatch
    from kernos.edge.sim.sim import DayRecord

__all__ = ["SOURCES", "ReadingColumns", "SimSource", "open_source", "sim_days"]

SOURCES: Final = ("sim", "mqtt")
"""Source names ``kernos-edge run --source`` knows."""


@dataclass(frozen=True, slots=True)
class ReadingColumns:
    """Readings column-wise (equal lengths, time order): what the filter's fast path takes."""

    bins: list[int]
    ts: list[float]
    level: list[float]
    temp_c: list[float]
    voc_ppm: list[float]

    def __len__(self) -> int:
        """The number of readings."""
        return len(self.bins)


def sim_days(
    params: CityParams, *, seed: int, days: int, empty_at: float = 0.8
) -> Iterator[tuple[DayRecord, ReadingBatch]]:
    """Run the simulated city day by day under the stand-in collection policy; yield each
    day's record (true levels) and its sensor readings."""
    import numpy as np

    from kernos.edge.sim.city import City
    from kernos.edge.sim.readings import SensorModel
    from kernos.edge.sim.sim import Simulation

    city = City.generate(params, seed)
    sim = Simulation(city, params, seed, days=days)
    sensors = SensorModel(city, params, seed, days=days)
    n = city.n_bins
    # Each bin has its own hour in the shift, so emptyings fall across the fill window.
    empty_hour = params.shift_start_h + (np.arange(n) % 8) * min(1.0, params.shift_h / 8)
    hours = np.unique(empty_hour).tolist()
    for _ in range(days):
        due = np.zeros(n, dtype=bool)
        for hour in hours:
            due |= (empty_hour == hour) & (sim.level_at(hour) >= empty_at)
        bins = np.flatnonzero(due)
        if bins.size:
            sim.empty(bins, hour=empty_hour[bins])
        record = sim.step_day()
        yield record, sensors.readings(record)


def day_columns(batch: ReadingBatch) -> Iterator[ReadingColumns]:
    """One day's readings as one :class:`ReadingColumns` per reporting time."""
    import numpy as np

    ts = batch.ts.tolist()
    for row in range(len(ts)):
        bins = np.flatnonzero(batch.present[row])
        yield ReadingColumns(
            bins=bins.tolist(),
            ts=[ts[row]] * int(bins.size),
            level=batch.level[row, bins].tolist(),
            temp_c=batch.temp_c[row, bins].tolist(),
            voc_ppm=batch.voc_ppm[row, bins].tolist(),
        )


class SimSource:
    """The simulated city's sensors, ``speed`` simulated hours per real second (0: flat out).

    Iterating yields one :class:`ReadingColumns` per reporting interval; :meth:`stop` ends
    the iteration at the next interval.
    """

    name = "sim"

    def __init__(
        self,
        params: CityParams,
        *,
        seed: int = 1,
        days: int = 1,
        speed: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if days < 1:
            raise EdgeConfigError("--days must be at least 1")
        if speed < 0:
            raise EdgeConfigError("--speed must be 0 (as fast as possible) or positive")
        self.params = params
        self.seed = seed
        self.days = days
        self.speed = speed
        self._sleep = sleep
        self._stopped = False

    def stop(self) -> None:
        """End the iteration at the next reporting interval."""
        self._stopped = True

    def __iter__(self) -> Iterator[ReadingColumns]:
        """Readings, interval by interval, paced by ``speed``."""
        interval_h = self.params.reporting_interval_h
        started = time.monotonic()
        done_h = 0.0
        for _, batch in sim_days(self.params, seed=self.seed, days=self.days):
            for columns in day_columns(batch):
                if self._stopped:
                    return
                yield columns
                done_h += interval_h
                if self.speed:
                    ahead = done_h / self.speed - (time.monotonic() - started)
                    if ahead > 0:
                        self._sleep(ahead)


def open_source(name: str, *, params: CityParams, seed: int, days: int, speed: float) -> SimSource:
    """The source called ``name``; :class:`EdgeConfigError` for one not available."""
    if name == "sim":
        return SimSource(params, seed=seed, days=days, speed=speed)
    if name == "mqtt":
        raise EdgeConfigError(
            "--source mqtt is not available yet in this version of kernos-edge; use --source sim"
        )
    raise EdgeConfigError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
