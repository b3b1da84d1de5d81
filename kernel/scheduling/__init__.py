"""The LLM scheduler (``LLMScheduler``) and its parts: the fair wait queue, circuit breakers,
backoff and per-attempt timeouts."""

from __future__ import annotations

from kernos.kernel.scheduling.breaker import BreakerState, CircuitBreaker
from kernos.kernel.scheduling.lane import BACKEND_TIMEOUT, BREAKER_OPEN, LaneSnapshot
from kernos.kernel.scheduling.queue import FairQueue, Waiter
from kernos.kernel.scheduling.retry import AttemptTimeout, backoff_delay
from kernos.kernel.scheduling.scheduler import LLMScheduler

__all__ = [
    "BACKEND_TIMEOUT",
    "BREAKER_OPEN",
    "AttemptTimeout",
    "BreakerState",
    "CircuitBreaker",
    "FairQueue",
    "LLMScheduler",
    "LaneSnapshot",
    "Waiter",
    "backoff_delay",
]
