"""Backoff with full jitter, and per-attempt timeouts on the kernel clock."""

from __future__ import annotations

import asyncio
import random
from types import TracebackType

from kernos.kernel.clock import Clock, SystemClock


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): uniform in
    ``[0, min(cap, base * 2^attempt)]``, so retries from many callers spread out instead of
    hammering a recovering server together.
    """
    return rng.uniform(0.0, min(cap, base * (2.0**attempt)))


class AttemptTimeout:
    """``async with AttemptTimeout(clock, seconds):`` — ``TimeoutError`` when the body runs
    longer than ``seconds`` of the clock's time.

    On ``SystemClock`` this is ``asyncio.timeout`` (a loop timer, no extra task). On other
    clocks (``SimulatedClock``) a watchdog task sleeps on that clock and cancels the body.
    """

    def __init__(self, clock: Clock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._native: asyncio.Timeout | None = None
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._expired = False

    async def __aenter__(self) -> AttemptTimeout:
        if isinstance(self._clock, SystemClock):
            self._native = asyncio.timeout(self._seconds)
            await self._native.__aenter__()
            return self
        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def _watch(self) -> None:
        await self._clock.sleep(self._seconds)
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._native is not None:
            await self._native.__aexit__(exc_type, exc, tb)
            return
        if self._timer is not None:
            self._timer.cancel()
        expired = self._expired and exc_type is asyncio.CancelledError
        if expired and self._task is not None and self._task.uncancel() == 0:
            raise TimeoutError from exc
