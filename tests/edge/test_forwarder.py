"""Store-and-forward against a real kernel and API: the edge buffers while the kernel is
down, and when it returns every buffered event arrives exactly once and in order; a poison
event is dead-lettered without blocking the rest; 429 is honoured; a refused key stops."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kernos.edge.buffer import ForwardBuffer, PendingEvent
from kernos.edge.filter import EdgeFilter, FilterParams
from kernos.edge.forwarder import Forwarder, ForwardRefused
from kernos.edge.runner import event_id, run_edge
from kernos.edge.sim import TOPIC
from kernos.edge.sim.params import CityParams
from kernos.edge.sources import SimSource
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.storage.models import EventRow
from kernos.kernel.tokens import read_admin_token
from tests.conftest import free_port


@dataclass
class Served:
    home: Path
    port: int
    kernel: Kernel | None
    key: str
    settings: dict[str, Any]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        settings = load_settings(home=self.home, api_port=self.port, **self.settings)
        self.kernel = Kernel(settings, plugins=PluginManager(entry_points=False), serve_api=True)
        await self.kernel.start()

    async def stop(self) -> None:
        assert self.kernel is not None
        await self.kernel.stop()
        self.kernel = None

    async def stored(self) -> list[tuple[str, dict[str, Any]]]:
        """(event id, data) of the stored sensor events, in the kernel's commit order."""
        assert self.kernel is not None
        async with self.kernel.db.read() as session:
            rows = await session.execute(
                select(EventRow.event_id, EventRow.data)
                .where(EventRow.topic == TOPIC)
                .order_by(EventRow.seq)
            )
            return [(r[0], r[1]) for r in rows]


async def create_key(
    url: str, home: Path, role: str = "forwarder", principal: str = "edge-1"
) -> str:
    admin = {"Authorization": f"Bearer {read_admin_token(home)}"}
    async with httpx.AsyncClient(base_url=url, headers=admin, timeout=30) as http:
        response = await http.post("/v1/keys", json={"principal": principal, "role": role})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def served_fixture(**settings: Any) -> Callable[..., Any]:
    @pytest.fixture
    async def served(kernos_home: Path) -> AsyncIterator[Served]:
        server = Served(kernos_home, free_port(), None, "", settings)
        await server.start()
        server.key = await create_key(server.url, kernos_home)
        try:
            yield server
        finally:
            if server.kernel is not None:
                await server.stop()

    return served


served = served_fixture()
throttled = served_fixture(event_ingest_rate=40.0, event_ingest_burst=10)


def sim_events(days: int, bins: int, node: str = "edge") -> list[PendingEvent]:
    params = CityParams(n_bins=bins)
    edge = EdgeFilter(FilterParams.for_city(params))
    events = []
    for chunk in SimSource(params, seed=3, days=days):
        for f in edge.process_columns(
            chunk.bins, chunk.ts, chunk.level, chunk.temp_c, chunk.voc_ppm
        ):
            events.append(
                PendingEvent(topic=TOPIC, payload=f.payload(), event_id=event_id(node, f))
            )
    return events


def start_forwarding(forwarder: Forwarder) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            forwarder.run(idle_s=0.05)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, errors


async def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_buffered_events_arrive_exactly_once_and_in_order_across_an_outage(
    served: Served, tmp_path: Path
) -> None:
    events = sim_events(days=4, bins=15)
    assert len(events) > 60
    first, during, after = events[:20], events[20:50], events[50:]
    buffer = ForwardBuffer(tmp_path / "buffer.sqlite")
    dead = ForwardBuffer(tmp_path / "buffer.sqlite.dead")
    forwarder = Forwarder(
        buffer, served.url, key=served.key, dead_letters=dead, batch_size=8,
        backoff_base_s=0.05, backoff_max_s=0.3,
    )  # fmt: skip
    thread, errors = start_forwarding(forwarder)
    try:
        buffer.append_many(first)
        await until(lambda: len(buffer) == 0, "the first events to be acked")

        await served.stop()  # the kernel goes down; the edge keeps reading and buffering
        failures = forwarder.stats.failures
        buffer.append_many(during)
        await until(lambda: forwarder.stats.failures >= failures + 3, "retries while down")
        assert len(buffer) == len(during)  # nothing acked, nothing lost

        await served.start()  # back, on the same database
        buffer.append_many(after)
        await until(lambda: len(buffer) == 0, "the backlog to drain")

        # A lost answer: the edge sends events again that the kernel already has.
        buffer.append_many(first[:5])
        await until(lambda: len(buffer) == 0, "the resent events to be acked")
    finally:
        forwarder.stop()
        thread.join(10)
    assert errors == []
    stored = await served.stored()
    assert [i for i, _ in stored] == [e.event_id for e in events]  # once each, in order
    assert [d for _, d in stored] == [dict(e.payload) for e in events]
    assert len(dead) == 0


async def test_a_poison_event_is_dead_lettered_and_the_rest_go_through(
    served: Served, tmp_path: Path
) -> None:
    events = sim_events(days=1, bins=10)[:9]
    poison = PendingEvent(topic=TOPIC, payload={"bin": 1}, event_id="x" * 100)  # id over 64
    batch = [*events[:4], poison, *events[4:]]
    with (
        ForwardBuffer(tmp_path / "b.sqlite") as buffer,
        ForwardBuffer(tmp_path / "b.sqlite.dead") as dead,
    ):
        buffer.append_many(batch)
        forwarder = Forwarder(buffer, served.url, key=served.key, dead_letters=dead)
        while len(buffer):
            await asyncio.to_thread(forwarder.send_batch)
        letters = dead.peek(10)
    assert forwarder.stats.dead_lettered == 1
    assert [letter.event_id for letter in letters] == [poison.event_id]
    assert letters[0].payload["status"] == 400
    assert "event id" in letters[0].payload["error"]
    assert letters[0].payload["event"]["data"] == {"bin": 1}
    assert [i for i, _ in await served.stored()] == [e.event_id for e in events]


async def test_429_is_waited_out(throttled: Served, tmp_path: Path) -> None:
    events = sim_events(days=1, bins=10)[:40]
    with (
        ForwardBuffer(tmp_path / "b.sqlite") as buffer,
        ForwardBuffer(tmp_path / "b.sqlite.dead") as dead,
    ):
        buffer.append_many(events)
        forwarder = Forwarder(
            buffer, throttled.url, key=throttled.key, dead_letters=dead, batch_size=10,
            backoff_base_s=0.05,
        )  # fmt: skip
        thread, errors = start_forwarding(forwarder)
        try:
            await until(lambda: len(buffer) == 0, "the throttled events to drain")
        finally:
            forwarder.stop()
            thread.join(10)
    assert errors == []
    assert forwarder.stats.failures >= 1  # at least one 429 on the way
    assert [i for i, _ in await throttled.stored()] == [e.event_id for e in events]


async def test_a_refused_key_stops_the_forwarder_and_keeps_the_events(
    served: Served, tmp_path: Path
) -> None:
    viewer = await create_key(served.url, served.home, role="viewer", principal="onlooker")
    with (
        ForwardBuffer(tmp_path / "b.sqlite") as buffer,
        ForwardBuffer(tmp_path / "b.sqlite.dead") as dead,
    ):
        buffer.append_many(sim_events(days=1, bins=3)[:5])
        for key, status in ((viewer, "403"), ("not-a-key", "401")):
            forwarder = Forwarder(buffer, served.url, key=key, dead_letters=dead)
            with pytest.raises(ForwardRefused, match=status):
                await asyncio.to_thread(forwarder.send_batch)
        assert len(buffer) == 5 and len(dead) == 0


async def test_run_edge_filters_buffers_forwards_and_dead_letters_malformed_readings(
    served: Served, tmp_path: Path
) -> None:
    good = {"bin": 0, "level": 0.3, "temp_c": 12.0, "voc_ppm": 1.0, "ts": 0.0}
    chunks = [
        [good, {**good, "ts": 3600.0, "level": "full"}, {"bin": 1}],
        [{**good, "ts": 7200.0, "voc_ppm": 70.0}, {**good, "ts": 7200.0}],
    ]
    buffer_path = tmp_path / "edge.sqlite"
    report = await asyncio.to_thread(
        run_edge,
        chunks,
        EdgeFilter(FilterParams(n_bins=10)),
        kernel_url=served.url,
        key=served.key,
        buffer_path=buffer_path,
        node="edge-a",
        drain_timeout_s=30,
    )
    assert report.raw == 5
    assert report.dropped == {"malformed": 2, "duplicate": 1}
    assert (report.forwarded, report.acked, report.left_in_buffer) == (2, 2, 0)
    assert report.dead_lettered == 2
    stored = await served.stored()
    assert [i for i, _ in stored] == ["edge-a-0-0", "edge-a-0-7200000"]
    assert stored[1][1]["hazard"] is True and stored[1][1]["reasons"] == ["hazard"]
    with ForwardBuffer(buffer_path.with_name("edge.sqlite.dead")) as dead:
        letters = dead.peek(10)
    assert [letter.payload["reading"] for letter in letters] == [chunks[0][1], chunks[0][2]]
    assert "level must be a number, got str" in letters[0].payload["error"]
    assert "missing field 'level'" in letters[1].payload["error"]
