"""A token bucket per tenant for event ingest (``POST /v1/events``).

Each tenant's bucket holds up to ``burst`` events and refills at ``rate`` per second on the
kernel clock. A batch takes as many tokens as it has events, all or nothing: a batch that does
not fit is refused whole with the seconds until it would, so a client retries the same batch
(idempotent per event id) after ``Retry-After``. In memory: a restart refills every bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernos.kernel.clock import Clock
from kernos.kernel.errors import RateLimited


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TenantRateLimiter:
    """Admits batches of events per tenant at a sustained rate with a burst allowance."""

    def __init__(self, clock: Clock, *, rate: float, burst: int) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def take(self, tenant: str, count: int) -> None:
        """Admit ``count`` events of ``tenant`` or raise ``RateLimited`` (nothing taken)."""
        now = self._clock.monotonic()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(tokens=float(self.burst), at=now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if count <= bucket.tokens:
            bucket.tokens -= count
            return
        wait = (count - bucket.tokens) / self.rate
        raise RateLimited(
            f"tenant {tenant!r} may publish {self.rate:g} events/s (bursts of {self.burst}); "
            f"this batch of {count} fits in {wait:.1f} s: retry then, or send smaller batches",
            retry_after=wait,
        )
