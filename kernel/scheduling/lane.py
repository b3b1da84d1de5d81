"""One backend as the scheduler sees it: its slots, wait queue, breaker and counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernos.kernel.errors import BackendError
from kernos.kernel.llm import BackendConfig, LLMBackend
from kernos.kernel.scheduling.breaker import CircuitBreaker
from kernos.kernel.scheduling.queue import FairQueue

BREAKER_OPEN = "breaker_open"
"""``BackendError.code`` when a backend's breaker refused the call."""
BACKEND_TIMEOUT = "backend_timeout"
"""``BackendError.code`` when an attempt ran past ``timeout_seconds``."""

_DEFAULT_SERVICE_SECONDS = 1.0  # before the first answer, for retry_after estimates
_SMOOTHING = 0.2  # weight of the newest service time in the moving average


@dataclass(frozen=True, slots=True, kw_only=True)
class LaneSnapshot:
    """One backend's state, for ``/metrics`` and the console."""

    backend: str
    capacity: int
    inflight: int
    queue_depth: int
    queue_limit: int
    breaker: str
    breaker_retry_in: float | None
    served: int
    failed: int
    rejected: int
    mean_service_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "backend": self.backend,
            "capacity": self.capacity,
            "inflight": self.inflight,
            "queue_depth": self.queue_depth,
            "queue_limit": self.queue_limit,
            "breaker": self.breaker,
            "breaker_retry_in": self.breaker_retry_in,
            "served": self.served,
            "failed": self.failed,
            "rejected": self.rejected,
            "mean_service_seconds": self.mean_service_seconds,
        }


class Lane:
    """A backend with its slots (``capacity``, from ``concurrency``), queue and breaker."""

    def __init__(
        self, backend: LLMBackend, *, breaker: CircuitBreaker, aging_per_second: float
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.config: BackendConfig = backend.config
        self.capacity = self.config.concurrency
        self.inflight = 0
        self.queue = FairQueue(aging_per_second=aging_per_second)
        self.breaker = breaker
        self.service_seconds: float | None = None
        self.served = 0
        self.failed = 0
        self.rejected = 0

    def observe(self, seconds: float) -> None:
        """An answer took ``seconds``: update the moving average of service times."""
        self.served += 1
        if self.service_seconds is None:
            self.service_seconds = seconds
        else:
            self.service_seconds += _SMOOTHING * (seconds - self.service_seconds)

    def retry_after(self) -> float:
        """Seconds until the queue has likely drained enough to take one more request."""
        service = self.service_seconds or _DEFAULT_SERVICE_SECONDS
        return round(max(0.05, (len(self.queue) + 1) * service / self.capacity), 3)

    def snapshot(self) -> LaneSnapshot:
        """The lane's state now."""
        return LaneSnapshot(
            backend=self.name,
            capacity=self.capacity,
            inflight=self.inflight,
            queue_depth=len(self.queue),
            queue_limit=self.config.queue_limit,
            breaker=self.breaker.state.value,
            breaker_retry_in=self.breaker.retry_in,
            served=self.served,
            failed=self.failed,
            rejected=self.rejected,
            mean_service_seconds=self.service_seconds,
        )

    def price(self, input_tokens: int, output_tokens: int) -> float:
        """Cost of a call at this backend's prices per 1,000 tokens."""
        config = self.config
        return (
            input_tokens * config.price_in_per_1k + output_tokens * config.price_out_per_1k
        ) / 1000

    def open_error(self) -> BackendError:
        """The fail-fast error of an open breaker (retryable, code ``breaker_open``)."""
        retry_in = self.breaker.retry_in
        when = "once the probe in flight answers" if retry_in is None else f"in {retry_in:.1f} s"
        error = BackendError(
            f"LLM backend {self.name!r} is failing (circuit breaker open after "
            f"{self.breaker.threshold} consecutive failures); it will be tried again {when}",
            retryable=True,
        )
        error.code = BREAKER_OPEN  # type: ignore[misc]  # an instance may refine its class's code
        return error

    def timeout_error(self) -> BackendError:
        """The error of an attempt past ``timeout_seconds`` (retryable, ``backend_timeout``)."""
        error = BackendError(
            f"LLM backend {self.name!r} did not answer within {self.config.timeout_seconds:g} s "
            "(timeout_seconds)",
            retryable=True,
        )
        error.code = BACKEND_TIMEOUT  # type: ignore[misc]
        return error
