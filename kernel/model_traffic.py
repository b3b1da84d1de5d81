"""Traffic between a model's versions: the canary/shadow decision and per-version figures.

The registry decides; the LLM scheduler (or any caller) acts. ``split_bucket`` maps a request
key (a process, a tenant, a conversation: whatever should stick to one version) to one of
10,000 buckets with SHA-256, so the split is the same in every process and on every restart,
and a canary of P % gets the keys in buckets below ``100 * P``. Callers record each answer's
latency and outcome into ``TrafficBook``, which keeps the figures to compare versions by
(in memory: they are metrics, not state).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kernos.kernel.errors import NotFound

BUCKETS = 10_000
"""Buckets of the canary split (a canary of P % owns buckets ``[0, 100 * P)``)."""

LATENCY_WINDOW = 2048
"""Latest latencies kept per version for percentiles."""


def split_bucket(name: str, key: str) -> int:
    """The bucket (0..9999) of ``key`` for model ``name``: stable, independent per model."""
    digest = hashlib.sha256(f"{name}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteChoice:
    """Which version answers a request, and which versions see a mirrored copy of it.

    ``shadows`` get the same request; their answers are recorded, never returned.
    """

    name: str
    version: str
    canary: bool = False
    """Whether ``version`` is the canary (the key fell in its share)."""
    shadows: tuple[str, ...] = ()


@dataclass(slots=True, kw_only=True)
class VersionStats:
    """Figures for one version: calls, errors, latency (seconds)."""

    name: str
    version: str
    calls: int = 0
    errors: int = 0
    shadow_calls: int = 0
    """Of ``calls``, how many were mirrored copies (shadow traffic)."""
    latency_sum: float = 0.0
    _latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    @property
    def error_rate(self) -> float:
        """Errors per call (0 with no calls)."""
        return self.errors / self.calls if self.calls else 0.0

    @property
    def mean_latency(self) -> float:
        """Mean latency over every call (0 with no calls)."""
        return self.latency_sum / self.calls if self.calls else 0.0

    def percentile(self, q: float) -> float:
        """Latency at quantile ``q`` (0..1) over the latest calls (nearest rank)."""
        if not self._latencies:
            return 0.0
        ordered = sorted(self._latencies)
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1]

    def as_dict(self) -> dict[str, float | int | str]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "version": self.version,
            "calls": self.calls,
            "errors": self.errors,
            "shadow_calls": self.shadow_calls,
            "error_rate": self.error_rate,
            "latency_mean": self.mean_latency,
            "latency_p50": self.percentile(0.5),
            "latency_p95": self.percentile(0.95),
        }


class TrafficBook:
    """Per-version latency and error counters that callers record into."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], VersionStats] = {}

    def record(
        self, name: str, version: str, *, latency: float, ok: bool, shadow: bool = False
    ) -> None:
        """Count one answer of ``name@version`` that took ``latency`` seconds."""
        stats = self._stats.get((name, version))
        if stats is None:
            stats = self._stats[(name, version)] = VersionStats(name=name, version=version)
        stats.calls += 1
        stats.errors += 0 if ok else 1
        stats.shadow_calls += 1 if shadow else 0
        stats.latency_sum += latency
        stats._latencies.append(latency)

    def stats(self, name: str) -> list[VersionStats]:
        """The figures of every version of ``name`` that has any, by version."""
        return sorted(
            (s for (n, _), s in self._stats.items() if n == name), key=lambda s: s.version
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployed:
    """The serving versions of one model: live, canary (version, percent) and shadows."""

    live: str | None
    canary: tuple[str, int] | None
    shadows: tuple[str, ...]


class Router:
    """``route`` on a cached view of each model's serving versions.

    ``load(name)`` reads the view from the database; ``invalidate`` (after every change the
    registry commits) drops the cache, and a read that overlapped a change is not kept.
    """

    def __init__(self, load: Callable[[str], Awaitable[Deployed]]) -> None:
        self._load = load
        self._cache: dict[str, Deployed] = {}
        self._generation = 0

    def invalidate(self) -> None:
        """Forget every cached view (a deployment changed)."""
        self._generation += 1
        self._cache.clear()

    async def route(self, name: str, *, key: str) -> RouteChoice:
        """The version that answers ``key`` (canary by ``split_bucket``, else live) and the
        shadows; ``NotFound`` when nothing is live."""
        deployed = self._cache.get(name)
        if deployed is None:
            generation = self._generation
            deployed = await self._load(name)
            if generation == self._generation:
                self._cache[name] = deployed
        if deployed.canary is not None:
            version, percent = deployed.canary
            if split_bucket(name, key) < percent * 100:
                return RouteChoice(
                    name=name, version=version, canary=True, shadows=deployed.shadows
                )
        if deployed.live is None:
            raise NotFound(
                f"model {name!r} has no live version; promote one with "
                f"`kernos models promote {name}@VERSION --stage live`"
            )
        return RouteChoice(name=name, version=deployed.live, shadows=deployed.shadows)
