"""What the Metrics screen draws, read from ``GET /metrics`` (Prometheus text).

The exposition is parsed by ``kernos.kernel.scrape`` — the same numbers ``kernos top``
shows. ``MetricsHistory.add`` takes one scrape and appends a point per series: syscall latency
p50/p95/p99 estimated from the histogram buckets that filled since the previous scrape
(linear inside a bucket, as Prometheus' ``histogram_quantile`` does), syscalls per second,
the scheduler's queue depth, and tokens used per model since the previous scrape.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from kernos.kernel.scrape import Scrape, parse, quantile

POINTS = 60
"""How many scrapes each sparkline remembers."""


def _all_kinds(scrape: Scrape) -> dict[float, float]:
    """Syscall latency buckets summed over the kinds."""
    summed: dict[float, float] = {}
    for buckets in scrape.latency.values():
        for bound, count in buckets.items():
            summed[bound] = summed.get(bound, 0.0) + count
    return summed


@dataclass(slots=True)
class MetricsHistory:
    """The last ``POINTS`` values of each series the screen draws."""

    p50: deque[float] = field(default_factory=lambda: deque(maxlen=POINTS))
    p95: deque[float] = field(default_factory=lambda: deque(maxlen=POINTS))
    p99: deque[float] = field(default_factory=lambda: deque(maxlen=POINTS))
    throughput: deque[float] = field(default_factory=lambda: deque(maxlen=POINTS))
    queue_depth: deque[float] = field(default_factory=lambda: deque(maxlen=POINTS))
    tokens: dict[str, deque[float]] = field(default_factory=dict)
    last: Scrape | None = None
    last_time: float | None = None

    def add(self, scrape: Scrape, *, at: float) -> None:
        """Add one scrape taken at monotonic time ``at`` (the first only sets the baseline
        for rates and windows, except the queue depth, which is a level)."""
        self.queue_depth.append(sum(scrape.queue_depth.values()))
        previous, then = self.last, self.last_time
        self.last, self.last_time = scrape, at
        if previous is None or then is None:
            return
        between = scrape.since(previous)
        window = _all_kinds(between)
        self.p50.append(quantile(0.50, window))
        self.p95.append(quantile(0.95, window))
        self.p99.append(quantile(0.99, window))
        elapsed = max(at - then, 1e-9)
        self.throughput.append(sum(between.syscalls.values()) / elapsed)
        used = between.tokens
        for model in sorted(set(scrape.tokens) | set(self.tokens)):
            self.tokens.setdefault(model, deque(maxlen=POINTS)).append(
                sum(used.get(model, {}).values())
            )


def latest(values: Iterable[float]) -> float:
    """The newest value of a series (0.0 when empty)."""
    last = 0.0
    for last in values:  # noqa: B007  # the loop variable is the answer
        pass
    return last


__all__ = ["POINTS", "MetricsHistory", "Scrape", "latest", "parse", "quantile"]
