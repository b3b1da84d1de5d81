"""``kernos top``: a plain-terminal summary of a running kernel, read from ``GET /metrics``."""

from __future__ import annotations

import time
from typing import Any

import click

from kernos.kernel.cli.output import print_json
from kernos.kernel.cli.remote import connect
from kernos.kernel.scrape import BREAKER_STATES, Scrape, count, parse, quantile

QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def summary(now: Scrape, earlier: Scrape | None, *, seconds: float | None) -> dict[str, Any]:
    """What ``top`` shows: levels now, latency quantiles since the kernel started, and rates
    over the ``seconds`` between ``earlier`` and ``now`` (``None`` without an earlier scrape)."""
    window = now.since(earlier) if earlier is not None else None
    per_second = window is not None and seconds is not None and seconds > 0

    def rate(value: float) -> float | None:
        return round(value / seconds, 3) if per_second and seconds else None

    kinds: dict[str, Any] = {}
    for kind in sorted(now.latency.keys() | now.syscalls.keys()):
        buckets = now.latency.get(kind, {})
        kinds[kind] = {
            "count": int(now.syscalls.get(kind, count(buckets))),
            "per_second": rate(window.syscalls.get(kind, 0.0)) if window else None,
            **{name: round(quantile(q, buckets), 6) for name, q in QUANTILES},
        }
    total = sum(window.syscalls.values()) if window is not None else None
    return {
        "interval_seconds": seconds if per_second else None,
        "processes": {state: int(n) for state, n in sorted(now.processes.items())},
        "syscalls_per_second": rate(total) if total is not None else None,
        "syscalls": kinds,
        "outcomes": {k: int(v) for k, v in sorted(now.outcomes.items())},
        "queue_depth": {b: int(v) for b, v in sorted(now.queue_depth.items())},
        "inflight": {b: int(v) for b, v in sorted(now.inflight.items())},
        "idle": {b: int(v) for b, v in sorted(now.idle.items())},
        "breakers": {
            b: BREAKER_STATES.get(int(v), str(v)) for b, v in sorted(now.breakers.items())
        },
        "tokens": {
            model: {t: int(v) for t, v in sorted(types.items())}
            for model, types in sorted(now.tokens.items())
        },
        "cost": {model: round(v, 6) for model, v in sorted(now.cost.items())},
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms"


def render(view: dict[str, Any]) -> str:
    """The summary as plain lines for a terminal."""
    processes = "  ".join(f"{s} {n}" for s, n in view["processes"].items() if n) or "none"
    rate = view["syscalls_per_second"]
    lines = [
        f"processes  {processes}",
        f"syscalls   {'-' if rate is None else f'{rate:g}/s'}  "
        + "  ".join(f"{k} {v}" for k, v in view["outcomes"].items()),
        "",
        f"{'KIND':<16}{'COUNT':>8}{'RATE/S':>9}{'P50':>10}{'P95':>10}{'P99':>10}",
    ]
    for kind, row in view["syscalls"].items():
        per_second = "-" if row["per_second"] is None else f"{row['per_second']:g}"
        lines.append(
            f"{kind:<16}{row['count']:>8}{per_second:>9}"
            f"{_ms(row['p50']):>10}{_ms(row['p95']):>10}{_ms(row['p99']):>10}"
        )
    backends = sorted(
        view["queue_depth"].keys()
        | view["inflight"].keys()
        | view["idle"].keys()
        | view["breakers"].keys()
    )
    if backends:
        lines += ["", f"{'BACKEND':<16}{'QUEUED':>8}{'RUNNING':>9}{'IDLE':>6}  BREAKER"]
        for backend in backends:
            lines.append(
                f"{backend:<16}{view['queue_depth'].get(backend, 0):>8}"
                f"{view['inflight'].get(backend, 0):>9}{view['idle'].get(backend, 0):>6}  "
                f"{view['breakers'].get(backend, 'closed')}"
            )
    if view["tokens"]:
        lines += ["", f"{'MODEL':<24}{'INPUT':>10}{'OUTPUT':>10}{'COST':>12}"]
        for model, types in view["tokens"].items():
            lines.append(
                f"{model:<24}{types.get('input', 0):>10}{types.get('output', 0):>10}"
                f"{view['cost'].get(model, 0.0):>12.4f}"
            )
    return "\n".join(lines)


@click.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0, max=3600),
    default=2.0,
    show_default=True,
    metavar="S",
    help="Seconds between refreshes; rates are over this window. With --once, 0 skips the "
    "second scrape (no rates).",
)
@click.option("--once", is_flag=True, help="Print one summary and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def top(interval: float, once: bool, as_json: bool) -> None:
    """Summarize a running kernel: processes by state, syscalls per second, latency
    p50/p95/p99 by kind (since the kernel started), scheduler queues and breakers, tokens
    and cost per model. Reads GET /metrics (a key that may read metrics:*).

    \b
    Examples:
      kernos top
      kernos top --once --json --interval 1
    """
    try:
        _loop(interval=interval, once=once, as_json=as_json)
    except KeyboardInterrupt:
        return


def _loop(*, interval: float, once: bool, as_json: bool) -> None:
    with connect() as client:
        earlier: Scrape | None = None
        then = 0.0
        if once and interval > 0:
            earlier, then = parse(client.metrics()), time.monotonic()
            time.sleep(interval)
        while True:
            now, at = parse(client.metrics()), time.monotonic()
            view = summary(now, earlier, seconds=at - then if earlier is not None else None)
            if as_json:
                print_json(view)
            else:
                if not once:
                    click.clear()
                click.echo(render(view))
            if once:
                return
            earlier, then = now, at
            time.sleep(interval or 2.0)
