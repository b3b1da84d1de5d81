"""The city-ops trade-off: the tuned static baseline against Kernos dispatch, with brackets.

    python bench/city_tradeoff.py [--quick] [--workers 2] [--json PATH]

The simulated city with its pinned defaults (``CityParams``, city seed 1), common random
numbers per replication (seeds 11, 12, ...; the history each policy is tuned on uses another
seed), a 28-day warm-up that is not counted. Swept along their trade-offs: the static plan's
overflow tolerance alpha and Kernos's risk threshold theta; brackets: the perfect-information
oracle and sensors without forecasting (a must-go reading). Every policy routes with the same
OR-Tools setup, fleet and capacity. Prints a Markdown section: each point's route km,
overflow incidents (bin-days above 100 %), pickups and mean fill at pickup as means with 95 %
t-intervals over replications, then the matched comparisons (``experiment.matched``) and an
ASCII plot of the two curves.

Targets (issue 8): at matched overflow Kernos needs >= 25 % fewer route km; at matched route
km Kernos has >= 40 % fewer overflow incidents. Reported as met / not met.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import benchlib

from kernos.plugins.routing.experiment import (
    PolicySpec,
    RunResult,
    as_dict,
    matched,
    summarize,
    sweep,
)
from kernos.plugins.sensors.params import CityParams

ALPHAS = (0.003, 0.01, 0.03, 0.1, 0.2, 0.35)
THETAS = (0.05, 0.15, 0.3, 0.5)
SENSOR_LEVELS = (0.75, 0.9)
PRIZE_M = 800.0
TARGET_KM = 0.25
TARGET_OVERFLOW = 0.40


def specs(quick: bool) -> list[PolicySpec]:
    """The sweep: baseline alphas, Kernos thetas, the sensor bracket, the oracle."""
    alphas = (0.01, 0.1, 0.35) if quick else ALPHAS
    thetas = (0.1, 0.5) if quick else THETAS
    levels = (0.9,) if quick else SENSOR_LEVELS
    out = [PolicySpec(kind="static", param=a) for a in alphas]
    out += [PolicySpec(kind="kernos", param=t, prize_m=PRIZE_M) for t in thetas]
    out += [PolicySpec(kind="sensors", param=v, prize_m=PRIZE_M) for v in levels]
    out.append(PolicySpec(kind="oracle", param=0.0, prize_m=PRIZE_M))
    return out


def plot(results: list[RunResult], *, width: int = 64, height: int = 18) -> str:
    """ASCII scatter of mean route km (x) against mean overflow (y): S static, K Kernos,
    s sensors, O oracle."""
    table = summarize(results)
    marks = {"static": "S", "kernos": "K", "sensors": "s", "oracle": "O"}
    points = [
        (v["route_km"].mean, v["overflow_incidents"].mean, marks[label.split("@")[0]])
        for label, v in table.items()
    ]
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = 0.0, max(ys)
    grid = [[" "] * width for _ in range(height)]
    for x, y, m in points:
        col = round((x - x0) / max(x1 - x0, 1e-9) * (width - 1))
        row = height - 1 - round((y - y0) / max(y1 - y0, 1e-9) * (height - 1))
        grid[row][col] = m
    lines = [f"{y1:8.0f} |" + "".join(grid[0])]
    lines += ["         |" + "".join(r) for r in grid[1:-1]]
    lines.append(f"{y0:8.0f} |" + "".join(grid[-1]))
    lines.append("         +" + "-" * width)
    lines.append(f"          {x0:<10.0f}{'route km':^{width - 20}}{x1:>10.0f}")
    lines.append(
        "overflow incidents (y) against route km (x); S static, K Kernos, s sensors, O oracle"
    )
    return "\n".join(lines)


def main() -> None:
    """Run the sweep and print the Markdown section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 replications of 56 days")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--replications", type=int, default=None)
    parser.add_argument("--days", type=int, default=None, help="days including the warm-up")
    parser.add_argument("--json", type=Path, default=None, help="write every run here")
    parser.add_argument(
        "--noise", type=float, default=None, help="robustness: sensor noise sigma instead"
    )
    parser.add_argument(
        "--missing", type=float, default=None, help="robustness: missing-reading rate instead"
    )
    args = parser.parse_args()
    reps = args.replications or (2 if args.quick else 10)
    days = args.days or (56 if args.quick else 84)
    seeds = list(range(11, 11 + reps))
    started = time.perf_counter()
    changes = {"noise_sigma": args.noise, "missing_rate": args.missing}
    params = dataclasses.replace(
        CityParams(), **{k: v for k, v in changes.items() if v is not None}
    )
    results = sweep(specs(args.quick), params=params, seeds=seeds, days=days, workers=args.workers)
    wall = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps([as_dict(r) for r in results], indent=1))

    print("## City-ops trade-off: static baseline against Kernos dispatch\n")
    print(benchlib.machine_line())
    print(
        f"\n{reps} replications (seeds {seeds[0]}..{seeds[-1]}), {days} days each of which "
        f"the first 28 are warm-up; {wall:.0f} s wall with {args.workers} workers; sensor "
        f"noise sigma {params.noise_sigma}, missing readings {params.missing_rate}.\n"
    )
    print("| policy | route km | overflow incidents | pickups | mean fill at pickup | s/run |")
    print("|---|---|---|---|---|---|")
    for label, m in summarize(results).items():
        print(
            f"| {label} | {m['route_km']} | {m['overflow_incidents']} | {m['pickups']} "
            f"| {m['mean_fill_at_pickup']} | {m['wall_s'].mean:.1f} |"
        )
    print("\nMatched comparisons, per replication along its own baseline curve (95 % t):\n")
    print("| Kernos theta | km saved at matched overflow | overflow avoided at matched km |")
    print("|---|---|---|")
    best_km = best_ov = -math.inf
    for m in matched(results):
        print(
            f"| {m.param:g} | {m.km_reduction} (n={m.km_reduction.n}) "
            f"| {m.overflow_reduction} (n={m.overflow_reduction.n}) |"
        )
        if m.km_reduction.n:
            best_km = max(best_km, m.km_reduction.mean)
        if m.overflow_reduction.n:
            best_ov = max(best_ov, m.overflow_reduction.mean)
    print(
        f"\nTarget km saved >= {TARGET_KM:.0%} at matched overflow: "
        f"{'met' if best_km >= TARGET_KM else 'not met'} (best {best_km:.1%}); "
        f"overflow avoided >= {TARGET_OVERFLOW:.0%} at matched km: "
        f"{'met' if best_ov >= TARGET_OVERFLOW else 'not met'} (best {best_ov:.1%}).\n"
    )
    print("```text")
    print(plot(results))
    print("```")


if __name__ == "__main__":
    main()
