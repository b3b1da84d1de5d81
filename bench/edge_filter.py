"""The edge pre-filter on the simulated city: readings/s, reduction and miss rate.

    python bench/edge_filter.py [--quick]

Readings of 300 bins, hourly, for 180 days (30 with ``--quick``) are generated first; then
the filter runs over them (median of 3 runs), against a baseline in the same run that
forwards everything (builds the event payload of every reading, which the edge would
otherwise send). Reduction and miss rate come from ``kernos.edge.evaluate`` (its docstring
defines them) at three sensor noise levels; the filter is tuned for the pinned 0.07.
"""

from __future__ import annotations

import time

import benchlib

from kernos.edge.evaluate import evaluate_filter
from kernos.edge.filter import EdgeFilter, FilterParams
from kernos.edge.sim.params import CityParams
from kernos.edge.sources import day_columns, sim_days


def throughput(days: int, runs: int) -> tuple[int, float, float]:
    params = CityParams()
    chunks = [c for _, batch in sim_days(params, seed=1, days=days) for c in day_columns(batch)]
    raw = sum(len(c) for c in chunks)
    filtered, passed = [], []
    for _ in range(runs):
        edge = EdgeFilter(FilterParams.for_city(params))
        started = time.perf_counter()
        for c in chunks:
            edge.process_columns(c.bins, c.ts, c.level, c.temp_c, c.voc_ppm)
        filtered.append(time.perf_counter() - started)
        started = time.perf_counter()
        for c in chunks:
            [
                {"bin": b, "level": lv, "temp_c": t, "voc_ppm": v, "ts": s}
                for b, s, lv, t, v in zip(c.bins, c.ts, c.level, c.temp_c, c.voc_ppm, strict=True)
            ]
        passed.append(time.perf_counter() - started)
    return raw, benchlib.median(filtered), benchlib.median(passed)


def main() -> None:
    args = benchlib.parse_args(__doc__ or "")
    days = 30 if args.quick else 180
    raw, filter_s, pass_s = throughput(days, runs=3)
    lines = [
        f"## Edge filter: 300 bins x {days} days, hourly readings (median of 3)",
        "",
        *benchlib.table(
            ["pass", "time", "readings/s", "vs baseline"],
            [
                [
                    "EdgeFilter.process_columns",
                    f"{filter_s:.2f} s",
                    f"{raw / filter_s:,.0f}",
                    f"{filter_s / pass_s:.1f}x",
                ],
                [
                    "baseline: a payload per reading",
                    f"{pass_s:.2f} s",
                    f"{raw / pass_s:,.0f}",
                    "1.0x",
                ],
            ],
        ),
        "",
    ]
    rows, pinned = [], None
    for sigma in (0.07,) if args.quick else (0.05, 0.07, 0.10):
        r = evaluate_filter(CityParams(noise_sigma=sigma), days=days, seed=1)
        pinned = r if sigma == 0.07 else pinned
        rows.append(
            [
                f"{sigma:.2f}",
                f"{r.raw:,}",
                f"{r.forwarded:,} ({r.forwarded_ratio:.1%})",
                f"{r.crossings:,}",
                f"{r.miss_rate:.2%}",
                f"{r.miss_rate_observable:.2%}",
                f"{r.false_alert_rate:.1%}",
                f"{r.hazards_flagged}/{r.hazard_incidents}",
            ]
        )
    assert pinned is not None
    lines += [
        "Reduction and misses (2 h window), per sensor noise sigma:",
        "",
        *benchlib.table(
            [
                "sigma",
                "raw",
                "forwarded",
                "crossings",
                "missed (all)",
                "missed (observable)",
                "false alerts",
                "hazards flagged",
            ],
            rows,
        ),
        "",
        f"Targets at sigma 0.07: forwarded <= 10 % {benchlib.met(pinned.forwarded_ratio <= 0.10)}"
        f", miss rate <= 1 % on observable crossings "
        f"{benchlib.met(pinned.miss_rate_observable <= 0.01)}"
        f", on all crossings {benchlib.met(pinned.miss_rate <= 0.01)}.",
        "",
    ]
    benchlib.emit([benchlib.machine_line(), "", *lines])


if __name__ == "__main__":
    main()
