"""The kernel's one injectable clock.

Timeouts, deadlines, escalations, TTLs, schedules and triggers read time from a ``Clock``
handed to them, never from ``time`` or ``datetime`` directly. ``SystemClock`` is real time;
``SimulatedClock`` only moves when told to, so a simulated city can run months in minutes
through the real kernel and tests control time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from typing import Any


class Clock(ABC):
    """Source of wall time, monotonic time and sleeping."""

    @abstractmethod
    def now(self) -> datetime:
        """Current wall time, timezone-aware in UTC."""

    @abstractmethod
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for durations)."""

    @abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock's time have passed (at once if ≤ 0)."""

    async def sleep_until(self, when: datetime) -> None:
        """Return once ``now()`` has reached ``when``."""
        await self.sleep((when - self.now()).total_seconds())


class SystemClock(Clock):
    """Real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class SimulatedClock(Clock):
    """Time that moves only through ``advance``/``advance_to``/``run_until_idle``.

    Sleepers wake in deadline order (ties in the order they went to sleep), and each one runs
    before time moves past its deadline, so simulated schedules see time as real code would:
    after waking a sleeper, time stands still until that task sleeps on this clock again or
    finishes — or, if it waits on something else (I/O, a thread, another task), until
    ``settle_timeout`` seconds of real time have passed.
    """

    def __init__(self, start: datetime | None = None, *, settle_timeout: float = 1.0) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("SimulatedClock needs a timezone-aware start time")
        self._start = start.astimezone(UTC)
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._watchers: list[tuple[int, asyncio.Future[None]]] = []
        self._owners: dict[asyncio.Future[None], asyncio.Task[Any] | None] = {}
        self._asleep: dict[asyncio.Task[Any], asyncio.Event] = {}
        self.settle_timeout = settle_timeout

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._order), future))
        task = asyncio.current_task()
        self._owners[future] = task
        if task is not None and task in self._asleep:
            self._asleep.pop(task).set()
        self._notify_watchers()
        try:
            await future
        finally:
            self._owners.pop(future, None)

    def _notify_watchers(self) -> None:
        pending = self.pending
        for count, watcher in list(self._watchers):
            if pending >= count and not watcher.done():
                watcher.set_result(None)
        self._watchers = [(c, w) for c, w in self._watchers if not w.done()]

    async def wait_for_sleepers(self, count: int = 1) -> None:
        """Return once at least ``count`` tasks are asleep on this clock (for tests and sims)."""
        if self.pending >= count:
            return
        watcher: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.append((count, watcher))
        await watcher

    @property
    def pending(self) -> int:
        """How many sleepers are waiting for time to move."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        """Monotonic time of the earliest live sleeper, or ``None``."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled sleepers
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper due on the way, in order."""
        if seconds < 0:
            raise ValueError("time cannot move backwards")
        await self._advance_to_elapsed(self._elapsed + seconds)

    async def advance_to(self, when: datetime) -> None:
        """Move time forward to ``when``."""
        await self.advance(max(0.0, (when - self.now()).total_seconds()))

    async def run_until_idle(self, *, limit: float | None = None) -> None:
        """Jump from deadline to deadline until no sleeper is left (or ``limit`` seconds pass)."""
        end = None if limit is None else self._elapsed + limit
        while (deadline := self.next_deadline()) is not None:
            if end is not None and deadline > end:
                break
            await self._advance_to_elapsed(deadline)
        if end is not None:
            await self._advance_to_elapsed(max(end, self._elapsed))

    async def _advance_to_elapsed(self, target: float) -> None:
        while (deadline := self.next_deadline()) is not None and deadline <= target:
            _, _, future = heapq.heappop(self._sleepers)
            self._elapsed = max(self._elapsed, deadline)
            task = self._owners.get(future)
            settled = asyncio.Event()
            if task is not None:
                self._asleep[task] = settled
            future.set_result(None)
            await self._settle(task, settled)
        self._elapsed = max(self._elapsed, target)

    async def _settle(self, task: asyncio.Task[Any] | None, settled: asyncio.Event) -> None:
        """Let a woken task run until it sleeps here again, ends, or settle_timeout passes."""
        if task is None:
            await asyncio.sleep(0)
            return
        waiter = asyncio.ensure_future(settled.wait())
        try:
            await asyncio.wait(
                {waiter, task}, timeout=self.settle_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            self._asleep.pop(task, None)
