"""The injectable clock: real, and simulated time that tests move by hand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from kernos.kernel.clock import SimulatedClock, SystemClock


async def test_system_clock_is_aware_and_sleeps() -> None:
    clock = SystemClock()
    assert clock.now().tzinfo is UTC
    before = clock.monotonic()
    await clock.sleep(0.01)
    assert clock.monotonic() > before


async def test_sleepers_wake_in_deadline_order_as_time_advances() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    clock = SimulatedClock(start)
    woke: list[tuple[str, datetime]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [
        asyncio.create_task(sleeper("day", 86400)),
        asyncio.create_task(sleeper("hour", 3600)),
        asyncio.create_task(sleeper("minute", 60)),
    ]
    await asyncio.wait_for(clock.wait_for_sleepers(3), timeout=5)
    assert clock.pending == 3
    await clock.advance(3600)
    assert woke == [("minute", start + timedelta(minutes=1)), ("hour", start + timedelta(hours=1))]
    await clock.run_until_idle()
    assert woke[-1] == ("day", start + timedelta(days=1))
    assert clock.now() == start + timedelta(days=1)
    await asyncio.gather(*tasks)


async def test_a_periodic_task_sees_every_tick() -> None:
    clock = SimulatedClock()
    ticks: list[float] = []

    async def every_ten_minutes() -> None:
        while True:
            await clock.sleep(600)
            ticks.append(clock.monotonic())

    task = asyncio.create_task(every_ten_minutes())
    await asyncio.sleep(0)
    await clock.advance(3600)
    task.cancel()
    assert ticks == [600, 1200, 1800, 2400, 3000, 3600]


async def test_cancelled_sleepers_and_bad_arguments() -> None:
    clock = SimulatedClock()
    task = asyncio.create_task(clock.sleep(10))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    assert clock.next_deadline() is None
    await clock.sleep(0)
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance(-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedClock(datetime(2026, 1, 1))
    await clock.advance_to(clock.now() + timedelta(seconds=5))
    assert clock.monotonic() == 5
    await clock.run_until_idle(limit=10)
    assert clock.monotonic() == 15


async def test_ticks_with_io_between_sleeps_are_not_lost() -> None:
    clock = SimulatedClock()
    ticks: list[float] = []

    async def every_minute_with_io() -> None:
        while True:
            await clock.sleep(60)
            await asyncio.to_thread(lambda: None)  # a database write, say
            ticks.append(clock.monotonic())

    task = asyncio.create_task(every_minute_with_io())
    await clock.wait_for_sleepers(1)
    await clock.advance(600)
    task.cancel()
    assert ticks == [60.0 * i for i in range(1, 11)]
