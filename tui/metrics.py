"""What the Metrics screen draws, read from ``GET /metrics`` (Prometheus text).

``MetricsHistory.add`` takes one scrape and appends a point per series: syscall latency
p50/p95/p99 estimated from the histogram buckets that filled since the previous scrape
(linear inside a bucket, as Prometheus' ``histogram_quantile`` does), syscalls per second,
the scheduler's queue depth, and tokens used per model since the previous scrape.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

SYSCALL_DURATION = "kernos_syscall_duration_seconds"
SYSCALLS = "kernos_syscalls"
QUEUE_DEPTH = "kernos_scheduler_queue_depth"
TOKEN_USAGE = "gen_ai_client_token_usage"  # noqa: S105  # a metric name
MODEL_LABEL = "gen_ai_request_model"

POINTS = 60
"""How many scrapes each sparkline remembers."""


@dataclass(frozen=True, slots=True)
class Scrape:
    """The numbers one scrape yields (cumulative where Prometheus' are)."""

    buckets: dict[float, float]
    """Syscall latency: cumulative count per upper bound (seconds), all series summed."""
    syscalls: float
    """Syscalls completed, all kinds and outcomes."""
    queue_depth: float
    """LLM requests waiting in the scheduler's queues, all backends."""
    tokens: dict[str, float]
    """Tokens used per model (input and output)."""


def parse(text: str) -> Scrape:
    """The console's numbers from a Prometheus text exposition."""
    buckets: dict[float, float] = {}
    syscalls = queue = 0.0
    tokens: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name == f"{SYSCALL_DURATION}_bucket":
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
            elif name in (SYSCALLS, f"{SYSCALLS}_total"):
                syscalls += value
            elif name == QUEUE_DEPTH:
                queue += value
            elif name == f"{TOKEN_USAGE}_sum":
                model = labels.get(MODEL_LABEL, "?")
                tokens[model] = tokens.get(model, 0.0) + value
    return Scrape(buckets=buckets, syscalls=syscalls, queue_depth=queue, tokens=tokens)


def quantile(q: float, buckets: dict[float, float]) -> float:
    """The ``q`` quantile of a cumulative histogram (0.0 when it holds no observation)."""
    bounds = sorted(buckets)
    if not bounds:
        return 0.0
    total = buckets[bounds[-1]]
    if total <= 0:
        return 0.0
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            width = count - lower_count
            share = (rank - lower_count) / width if width > 0 else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


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
        self.queue_depth.append(scrape.queue_depth)
        previous, then = self.last, self.last_time
        self.last, self.last_time = scrape, at
        if previous is None or then is None:
            return
        window = {
            bound: max(0.0, count - previous.buckets.get(bound, 0.0))
            for bound, count in scrape.buckets.items()
        }
        self.p50.append(quantile(0.50, window))
        self.p95.append(quantile(0.95, window))
        self.p99.append(quantile(0.99, window))
        elapsed = max(at - then, 1e-9)
        self.throughput.append(max(0.0, scrape.syscalls - previous.syscalls) / elapsed)
        for model in sorted(set(scrape.tokens) | set(self.tokens)):
            used = scrape.tokens.get(model, 0.0) - previous.tokens.get(model, 0.0)
            self.tokens.setdefault(model, deque(maxlen=POINTS)).append(max(0.0, used))


def latest(values: Iterable[float]) -> float:
    """The newest value of a series (0.0 when empty)."""
    last = 0.0
    for last in values:  # noqa: B007  # the loop variable is the answer
        pass
    return last
