"""A circuit breaker per backend, on the kernel clock.

``closed`` → (``threshold`` consecutive failures) → ``open`` → (``cooldown`` seconds) →
``half_open``: one probe request goes through; its success closes the breaker, its failure
opens it again for another cooldown. Only retryable failures (refused, 5xx, timeouts) count:
a 4xx answer means the server is up. While open, callers fail fast.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from kernos.kernel.clock import Clock


class BreakerState(StrEnum):
    """Where a breaker stands (the ``kernos.breaker.state`` gauge: 0, 1, 2)."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def level(self) -> int:
        """The gauge value: 0 closed, 1 half-open, 2 open."""
        return {"closed": 0, "half_open": 1, "open": 2}[self.value]


class Ticket(StrEnum):
    """What ``CircuitBreaker.admit`` lets a request be."""

    NORMAL = "normal"
    PROBE = "probe"


class CircuitBreaker:
    """One backend's breaker. Not thread-safe: the scheduler runs on one event loop."""

    def __init__(
        self,
        clock: Clock,
        *,
        threshold: int = 5,
        cooldown: float = 30.0,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if threshold < 1 or cooldown < 0:
            raise ValueError("a breaker needs threshold ≥ 1 and cooldown ≥ 0")
        self._clock = clock
        self.threshold = threshold
        self.cooldown = cooldown
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._retry_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose cooldown passed reads ``half_open``)."""
        if self._state is BreakerState.OPEN and self._clock.monotonic() >= self._retry_at:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def retry_at(self) -> float | None:
        """Clock time an open breaker lets a probe through, or ``None`` when not open."""
        return self._retry_at if self._state is BreakerState.OPEN else None

    @property
    def retry_in(self) -> float | None:
        """Seconds until an open breaker lets a probe through, or ``None`` when not open."""
        if self._state is not BreakerState.OPEN:
            return None
        return max(0.0, self._retry_at - self._clock.monotonic())

    @property
    def failures(self) -> int:
        """Consecutive failures counted so far."""
        return self._failures

    def blocked(self) -> bool:
        """Whether a request would be refused now (without taking the probe)."""
        state = self.state
        return state is BreakerState.OPEN or (state is BreakerState.HALF_OPEN and self._probing)

    def admit(self) -> Ticket | None:
        """Let a request through (as the probe, when half-open), or ``None`` to fail fast."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Ticket.NORMAL
        if state is BreakerState.OPEN or self._probing:
            return None
        self._set(BreakerState.HALF_OPEN)
        self._probing = True
        return Ticket.PROBE

    def success(self, ticket: Ticket) -> None:
        """The request answered (a 4xx answer counts: the server is up)."""
        if ticket is Ticket.PROBE:
            self._probing = False
            self._failures = 0
            self._set(BreakerState.CLOSED)
        elif self._state is BreakerState.CLOSED:
            self._failures = 0

    def failure(self, ticket: Ticket) -> None:
        """The request failed retryably (refused, 5xx, timeout)."""
        if ticket is Ticket.PROBE:
            self._probing = False
            self._trip()
        elif self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.threshold:
                self._trip()

    def abandon(self, ticket: Ticket) -> None:
        """The request ended without a verdict (its caller went away)."""
        if ticket is Ticket.PROBE:
            self._probing = False

    def _trip(self) -> None:
        self._retry_at = self._clock.monotonic() + self.cooldown
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state or state is BreakerState.OPEN:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)
