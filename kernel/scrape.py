"""Reading a kernel's ``GET /metrics`` back into numbers: what ``kernos top`` shows and what
the console's metrics screen can draw from the same parse.

``parse`` turns one Prometheus text exposition into a ``Scrape`` (cumulative values, as
Prometheus keeps them); ``quantile`` estimates a quantile from cumulative histogram buckets
the way Prometheus' ``histogram_quantile`` does (linear inside a bucket); ``Scrape.since``
gives the difference between two scrapes (what happened in between).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

PROCESSES = "kernos_processes"
SYSCALLS = "kernos_syscalls_total"
SYSCALL_DURATION = "kernos_syscall_duration_seconds"
QUEUE_DEPTH = "kernos_scheduler_queue_depth"
INFLIGHT = "kernos_scheduler_inflight"
IDLE = "kernos_scheduler_idle_capacity"
BREAKER = "kernos_breaker_state"
TOKENS = "gen_ai_client_token_usage_sum"  # a metric name
COST = "kernos_inference_cost_total"

KIND = "kernos_syscall_kind"
BACKEND = "kernos_backend"
MODEL = "gen_ai_request_model"
TOKEN_TYPE = "gen_ai_token_type"  # noqa: S105  # a label name

_K = TypeVar("_K")

BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}
"""``kernos_breaker_state`` values by name."""


@dataclass(slots=True)
class Scrape:
    """The numbers of one scrape, summed over the labels ``kernos top`` does not show."""

    processes: dict[str, float] = field(default_factory=dict)
    """Processes by state."""
    syscalls: dict[str, float] = field(default_factory=dict)
    """Syscalls completed by kind (every outcome), cumulative."""
    outcomes: dict[str, float] = field(default_factory=dict)
    """Syscalls completed by outcome (ok, denied, failed, ...), cumulative."""
    latency: dict[str, dict[float, float]] = field(default_factory=dict)
    """Syscall latency by kind: cumulative count per bucket upper bound (seconds)."""
    queue_depth: dict[str, float] = field(default_factory=dict)
    """LLM requests waiting, by backend."""
    inflight: dict[str, float] = field(default_factory=dict)
    """LLM requests running, by backend."""
    idle: dict[str, float] = field(default_factory=dict)
    """Free request slots, by backend."""
    breakers: dict[str, float] = field(default_factory=dict)
    """Circuit breaker level by backend (0 closed, 1 half-open, 2 open)."""
    tokens: dict[str, dict[str, float]] = field(default_factory=dict)
    """Tokens by model, then by type (input, output), cumulative."""
    cost: dict[str, float] = field(default_factory=dict)
    """Cost of inference by model, cumulative."""

    def since(self, earlier: Scrape) -> Scrape:
        """What happened between ``earlier`` and this scrape: counters and histograms as
        differences (never negative: a restarted kernel counts from zero again), levels
        (processes, queues, breakers) as they are now."""
        return Scrape(
            processes=dict(self.processes),
            syscalls=_minus(self.syscalls, earlier.syscalls),
            outcomes=_minus(self.outcomes, earlier.outcomes),
            latency={
                kind: _minus(buckets, earlier.latency.get(kind, {}))
                for kind, buckets in self.latency.items()
            },
            queue_depth=dict(self.queue_depth),
            inflight=dict(self.inflight),
            idle=dict(self.idle),
            breakers=dict(self.breakers),
            tokens={
                model: _minus(types, earlier.tokens.get(model, {}))
                for model, types in self.tokens.items()
            },
            cost=_minus(self.cost, earlier.cost),
        )


def _minus(now: Mapping[_K, float], then: Mapping[_K, float]) -> dict[_K, float]:
    return {key: max(0.0, value - then.get(key, 0.0)) for key, value in now.items()}


def _add(into: dict[str, float], key: str, value: float) -> None:
    into[key] = into.get(key, 0.0) + value


def parse(text: str) -> Scrape:
    """A ``Scrape`` from a Prometheus text exposition (format 0.0.4)."""
    scrape = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name == PROCESSES:
                _add(scrape.processes, labels.get("state", "?"), value)
            elif name == SYSCALLS:
                _add(scrape.syscalls, labels.get(KIND, "?"), value)
                _add(scrape.outcomes, labels.get("outcome", "?"), value)
            elif name == f"{SYSCALL_DURATION}_bucket":
                buckets = scrape.latency.setdefault(labels.get(KIND, "?"), {})
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
            elif name == QUEUE_DEPTH:
                _add(scrape.queue_depth, labels.get(BACKEND, "?"), value)
            elif name == INFLIGHT:
                _add(scrape.inflight, labels.get(BACKEND, "?"), value)
            elif name == IDLE:
                _add(scrape.idle, labels.get(BACKEND, "?"), value)
            elif name == BREAKER:
                backend = labels.get(BACKEND, "?")
                scrape.breakers[backend] = max(scrape.breakers.get(backend, 0.0), value)
            elif name == TOKENS:
                types = scrape.tokens.setdefault(labels.get(MODEL) or "?", {})
                _add(types, labels.get(TOKEN_TYPE, "?"), value)
            elif name == COST:
                _add(scrape.cost, labels.get(MODEL) or "?", value)
    return scrape


def quantile(q: float, buckets: Mapping[float, float]) -> float:
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


def count(buckets: Mapping[float, float]) -> float:
    """Observations in a cumulative histogram (its ``+Inf`` bucket)."""
    return buckets.get(math.inf, max(buckets.values(), default=0.0))
