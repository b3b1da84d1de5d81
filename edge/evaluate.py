"""Measures the edge filter on the simulated city: reduction and miss rate.

:func:`evaluate_filter` runs a city (``kernos.edge.sim``) for some days under a simple
collection policy (each bin is emptied at its own hour of the shift when its *true* level is
at least ``empty_at``, so levels rise and fall all the time), feeds every sensor reading to an
:class:`~kernos.edge.filter.EdgeFilter`, and compares what it forwarded with the true levels.

**Miss rate, defined.** A *true crossing* is a moment ``t*`` when the true fill level of a bin
rises through the alert (0.75) or must-go (0.90) threshold, found between two reporting times
and placed by linear interpolation (the level rises linearly while waste arrives). It is
*detected* when the kernel's picture of the bin declares it in that band or above (the
``band`` field of the last forwarded event of the bin) at some moment between ``t*`` and
``t* + window_s`` (default 2 h) — so early warnings count, and so does a view that was right
before the bin was emptied within the window; otherwise it is *missed*. Crossings in
the first ``settle_days`` are not counted (the filter starts cold). Two rates are reported: over
all crossings, and over the *observable* ones — those with at least one sensor reading in
``[t*, t* + window_s]`` (a dead sensor or missing readings hide the others from any filter).

**False alerts**: forwarded events that declare a band while the true level is more than
``false_margin`` below its threshold, as a fraction of the forwarded events declaring a band.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from kernos.edge.filter import EdgeFilter, FilterParams, Forward
from kernos.edge.hazard import HazardClassifier
from kernos.edge.sim.params import CityParams
from kernos.edge.sim.readings import BANDS
from kernos.edge.sources import sim_days

__all__ = ["FilterReport", "evaluate_filter"]


@dataclass(frozen=True, kw_only=True, slots=True)
class FilterReport:
    """The numbers of one evaluation run."""

    days: int
    bins: int
    noise_sigma: float
    raw: int
    """Readings the sensors sent."""
    forwarded: int
    """Readings the filter forwarded."""
    dropped: dict[str, int]
    reasons: dict[str, int]
    crossings: int
    """True upward crossings of the alert and must-go thresholds (after ``settle_days``)."""
    missed: int
    observable: int
    """Crossings with a sensor reading within the window."""
    missed_observable: int
    band_events: int
    """Forwarded events declaring ``alert`` or ``must_go``."""
    false_alerts: int
    hazard_incidents: int
    """Bins that held hazardous waste with a reading arriving meanwhile."""
    hazards_flagged: int
    """Of those, how many the edge flagged while the hazard was present."""
    filter_seconds: float
    """Wall time spent in the filter alone."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def forwarded_ratio(self) -> float:
        """Forwarded over raw readings."""
        return self.forwarded / self.raw if self.raw else math.nan

    @property
    def miss_rate(self) -> float:
        """Missed over all crossings."""
        return self.missed / self.crossings if self.crossings else math.nan

    @property
    def miss_rate_observable(self) -> float:
        """Missed over observable crossings."""
        return self.missed_observable / self.observable if self.observable else math.nan

    @property
    def false_alert_rate(self) -> float:
        """False alerts over forwarded events declaring a band."""
        return self.false_alerts / self.band_events if self.band_events else math.nan

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy, rates included."""
        return {
            "days": self.days,
            "bins": self.bins,
            "noise_sigma": self.noise_sigma,
            "raw": self.raw,
            "forwarded": self.forwarded,
            "forwarded_ratio": round(self.forwarded_ratio, 5),
            "dropped": self.dropped,
            "reasons": self.reasons,
            "crossings": self.crossings,
            "missed": self.missed,
            "miss_rate": round(self.miss_rate, 5),
            "observable": self.observable,
            "missed_observable": self.missed_observable,
            "miss_rate_observable": round(self.miss_rate_observable, 5),
            "band_events": self.band_events,
            "false_alerts": self.false_alerts,
            "false_alert_rate": round(self.false_alert_rate, 5),
            "hazard_incidents": self.hazard_incidents,
            "hazards_flagged": self.hazards_flagged,
            "filter_seconds": round(self.filter_seconds, 3),
            "readings_per_s": round(self.raw / self.filter_seconds) if self.filter_seconds else 0,
            **self.extra,
        }


def evaluate_filter(
    city_params: CityParams | None = None,
    filter_params: FilterParams | None = None,
    *,
    days: int = 180,
    seed: int = 1,
    empty_at: float = 0.8,
    window_s: float = 2 * 3600.0,
    settle_days: int = 2,
    false_margin: float = 0.10,
    hazard: HazardClassifier | None = None,
) -> FilterReport:
    """Run the city for ``days`` and measure the filter (see the module docstring)."""
    import numpy as np

    cp = city_params or CityParams()
    fp = filter_params or FilterParams.for_city(cp)
    edge = EdgeFilter(fp, hazard=hazard)
    n = cp.n_bins
    true_rows: list[Any] = []
    present_rows: list[Any] = []
    hazard_rows: list[Any] = []
    forwards: list[Forward] = []
    spent = 0.0
    for record, batch in sim_days(cp, seed=seed, days=days, empty_at=empty_at):
        true_rows.append(record.level_at(batch.hours))
        present_rows.append(batch.present)
        hazard_rows.append(record.hazard_at(batch.hours))
        rows, cols = np.nonzero(batch.present)
        columns = (
            cols.tolist(),
            batch.ts[rows].tolist(),
            batch.level[rows, cols].tolist(),
            batch.temp_c[rows, cols].tolist(),
            batch.voc_ppm[rows, cols].tolist(),
        )
        started = time.perf_counter()
        forwards.extend(edge.process_columns(*columns))
        spent += time.perf_counter() - started

    interval_s = cp.reporting_interval_h * 3600.0
    true = np.vstack(true_rows)  # (days * readings_per_day, n), row i at i * interval_s
    present = np.vstack(present_rows)
    hazard_true = np.vstack(hazard_rows)

    fw_bin = np.array([f.bin for f in forwards], dtype=np.int64)
    fw_ts = np.array([f.ts for f in forwards], dtype=np.float64)
    fw_band = np.array([BANDS.index(f.band) for f in forwards], dtype=np.int64)
    fw_hazard = np.array([f.hazard for f in forwards], dtype=bool)
    order = np.lexsort((fw_ts, fw_bin))
    fw_bin, fw_ts, fw_band, fw_hazard = (
        fw_bin[order],
        fw_ts[order],
        fw_band[order],
        fw_hazard[order],
    )
    span = float(days * 86_400 + 1)
    keys = fw_bin * span + fw_ts

    first_row = settle_days * cp.readings_per_day
    crossings = missed = observable = missed_observable = 0
    for k, threshold in enumerate((cp.alert_level, cp.must_go_level), start=1):
        before, after = true[:-1], true[1:]
        rows, cols = np.nonzero((before < threshold) & (after >= threshold))
        keep = rows >= first_row
        rows, cols = rows[keep], cols[keep]
        frac = (threshold - before[rows, cols]) / (after[rows, cols] - before[rows, cols])
        t_star = (rows + frac) * interval_s
        deadline = t_star + window_s
        # The kernel's view at t* (the last forward up to then), and every forward after it
        # up to the deadline: detected when one of them declares band k or above.
        lo = np.searchsorted(keys, cols * span + t_star, side="right") - 1
        hi = np.searchsorted(keys, cols * span + deadline, side="right")
        ok = np.zeros(rows.size, dtype=bool)
        for i, (a, z, b) in enumerate(zip(lo.tolist(), hi.tolist(), cols.tolist(), strict=True)):
            a = max(a, 0)
            ok[i] = bool(((fw_bin[a:z] == b) & (fw_band[a:z] >= k)).any())
        first = np.ceil(t_star / interval_s - 1e-9).astype(np.int64)
        last = np.minimum(np.floor(deadline / interval_s + 1e-9).astype(np.int64), len(true) - 1)
        cum = np.vstack([np.zeros((1, n), dtype=np.int64), np.cumsum(present, axis=0)])
        readable = (cum[last + 1, cols] - cum[np.minimum(first, last + 1), cols]) > 0
        crossings += int(rows.size)
        missed += int((~ok).sum())
        observable += int(readable.sum())
        missed_observable += int((~ok & readable).sum())

    fw_rows = np.round(fw_ts / interval_s).astype(np.int64)
    true_at = true[fw_rows, fw_bin]
    thresholds = np.array([-np.inf, cp.alert_level, cp.must_go_level])
    banded = fw_band > 0
    false_alerts = int((banded & (true_at < thresholds[fw_band] - false_margin)).sum())

    # Hazards: per bin, incidents are runs of hours holding hazardous waste.
    incidents = flagged = 0
    for b in np.flatnonzero(hazard_true.any(axis=0)).tolist():
        held = hazard_true[:, b]
        starts = np.flatnonzero(held & ~np.concatenate([[False], held[:-1]]))
        for start in starts.tolist():
            end = start
            while end < len(held) and held[end]:
                end += 1
            if not present[start:end, b].any():
                continue
            incidents += 1
            lo, hi = b * span + start * interval_s, b * span + (end - 1) * interval_s
            window = (keys >= lo) & (keys <= hi)
            flagged += int(bool(fw_hazard[window].any()))

    stats = edge.stats
    return FilterReport(
        days=days,
        bins=n,
        noise_sigma=cp.noise_sigma,
        raw=stats.raw,
        forwarded=stats.forwarded,
        dropped=dict(stats.dropped),
        reasons=dict(sorted(stats.reasons.items())),
        crossings=crossings,
        missed=missed,
        observable=observable,
        missed_observable=missed_observable,
        band_events=int(banded.sum()),
        false_alerts=false_alerts,
        hazard_incidents=incidents,
        hazards_flagged=flagged,
        filter_seconds=spent,
        extra={"deferred": stats.deferred, "seed": seed, "window_s": window_s},
    )
