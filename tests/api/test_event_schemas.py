"""Event schemas: a malformed sensor reading over HTTP is refused with its reason, counted,
and kept in the dead-letter queue, while the rest of its batch is delivered; plugins register
schemas for their own topics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select

from kernos.kernel.errors import Conflict
from kernos.kernel.events import REJECTED, Event, EventSchema
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import AuditRow
from tests.api.test_api import Api, api, assert_problem  # the fixture

__all__ = ["api"]


def reading(i: int, **changes: Any) -> dict[str, Any]:
    data = {"bin": i, "level": 0.5, "temp_c": 12.0, "voc_ppm": 1.0, "ts": 3600.0 * i}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


async def test_a_malformed_reading_is_refused_kept_and_the_rest_delivered(api: Api) -> None:
    seen: list[str] = []

    async def handler(event: Event) -> None:
        seen.append(event.id)

    api.kernel.events.subscribe("sensor.bin.*", handler, name="dispatcher-feed")
    batch = {
        "events": [
            {"id": "ok-1", "topic": "sensor.bin.fill", "data": reading(1)},
            {"id": "bad-level", "topic": "sensor.bin.fill", "data": reading(2, level="full")},
            {"id": "ok-3", "topic": "sensor.bin.fill", "data": reading(3)},
            {"id": "bad-missing", "topic": "sensor.bin.fill", "data": reading(4, ts=None)},
            {"id": "other-topic", "topic": "sensor.bin.alarm", "data": {"anything": 1}},
        ]
    }
    answer = await api.http.post("/v1/events", json=batch)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["accepted"] == 3
    assert body["ids"] == [e["id"] for e in batch["events"]]
    assert [(r["index"], r["id"]) for r in body["rejected"]] == [
        (1, "bad-level"),
        (3, "bad-missing"),
    ]
    assert "level" in body["rejected"][0]["reason"]
    assert "missing field 'ts'" in body["rejected"][1]["reason"]
    await api.kernel.events.drain()
    assert sorted(seen) == ["ok-1", "ok-3", "other-topic"]  # nothing refused was delivered
    letters = (await api.http.get("/v1/events/dlq")).json()["data"]
    assert {(d["event"]["id"], d["subscriber"]) for d in letters} == {
        ("bad-level", REJECTED),
        ("bad-missing", REJECTED),
    }
    assert all(d["attempts"] == 0 and d["error"] for d in letters)
    stored = (await api.http.get("/v1/events", params={"topic": "sensor.bin.fill"})).json()
    assert [e["id"] for e in stored["data"]] == ["ok-1", "bad-level", "ok-3", "bad-missing"]
    replay = await api.http.post(f"/v1/events/dlq/{letters[0]['id']}/replay")
    assert "publish a corrected event" in assert_problem(replay, 409, "conflict")["detail"]
    async with api.kernel.db.read() as session:
        [record] = await session.scalars(select(AuditRow).where(AuditRow.event == "event.rejected"))
    assert record.args["events"] == 2 and record.decision == "deny"
    again = await api.http.post("/v1/events", json=batch)  # a retried batch changes nothing
    assert len(again.json()["rejected"]) == 2
    assert len((await api.http.get("/v1/events/dlq")).json()["data"]) == 2


async def test_a_refused_id_stays_refused_and_repeats_follow_the_first(api: Api) -> None:
    bad = {"id": "r1", "topic": "sensor.bin.fill", "data": reading(1, level="full")}
    first = (await api.http.post("/v1/events", json={"events": [bad]})).json()
    assert [r["id"] for r in first["rejected"]] == ["r1"]
    # The sender fixes the reading but keeps the id: what is stored under r1 is the refused
    # one, so the answer must say so rather than report it accepted.
    fixed = {"id": "r1", "topic": "sensor.bin.fill", "data": reading(1)}
    again = (await api.http.post("/v1/events", json={"events": [fixed]})).json()
    assert again["accepted"] == 0
    [refused] = again["rejected"]
    assert "refused before" in refused["reason"] and "new id" in refused["reason"]
    # A repeated id within one batch: the first copy decides, for every copy.
    batch = [
        {"id": "d1", "topic": "sensor.bin.fill", "data": reading(2)},
        {"id": "d1", "topic": "sensor.bin.fill", "data": reading(2, level="full")},
        {"id": "d2", "topic": "sensor.bin.fill", "data": reading(3, level="full")},
        {"id": "d2", "topic": "sensor.bin.fill", "data": reading(3)},
    ]
    mixed = (await api.http.post("/v1/events", json={"events": batch})).json()
    assert mixed["accepted"] == 2
    assert [r["index"] for r in mixed["rejected"]] == [2, 3]
    letters = (await api.http.get("/v1/events/dlq")).json()["data"]
    assert sorted(d["event"]["id"] for d in letters) == ["d2", "r1"]


class Orders:
    """A plugin with a schema of its own."""

    @hookimpl
    def register_event_schemas(self, register: Callable[[EventSchema], None]) -> None:
        def problems(data: dict[str, Any]) -> list[str]:
            if not isinstance(data.get("qty"), int) or data["qty"] < 1:
                return ["qty must be a positive integer"]
            if data.get("explode"):
                raise RuntimeError("the check itself broke")
            return []

        register(EventSchema(topic="shop.order", check=problems))


@pytest.fixture
async def kernel(kernos_settings: Settings) -> AsyncIterator[Kernel]:
    plugins = PluginManager(entry_points=False)
    plugins.add(Orders(), name="orders")
    started = Kernel(kernos_settings, plugins=plugins)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


def order(event_id: str, **data: Any) -> Event:
    return Event(id=event_id, topic="shop.order", tenant="default", source="test", data=data)


async def test_a_plugins_schema_guards_its_topic_for_every_publisher(kernel: Kernel) -> None:
    spawned: list[str] = []

    async def handler(event: Event) -> None:
        spawned.append(event.id)

    kernel.events.subscribe("shop.#", handler, name="fulfil")
    done = await kernel.events.publish_batch(
        [order("o1", qty=2), order("o2", qty=0), order("o3", qty=1, explode=True)]
    )
    assert sorted(done.rejected) == [1, 2]
    assert "qty must be a positive integer" in done.rejected[1]
    assert "the check itself broke" in done.rejected[2]  # a broken check refuses, never raises
    await kernel.events.drain()
    assert spawned == ["o1"]
    letters = await kernel.events.dead_letters()
    assert {d.event.id for d in letters} == {"o2", "o3"}
    with pytest.raises(Conflict):
        await kernel.events.replay(letters[0].id)
    # Tenants are apart: the same id refused in one tenant and fine in another.
    await kernel.identity.ensure_tenant("acme")
    other = await kernel.events.publish_batch(
        [
            Event(id="x", topic="shop.order", tenant="default", source="t", data={"qty": 0}),
            Event(id="x", topic="shop.order", tenant="acme", source="t", data={"qty": 3}),
        ]
    )
    assert list(other.rejected) == [0]
    await kernel.events.drain()
    assert sorted(spawned) == ["o1", "x"]
    assert {d.event.id for d in await kernel.events.dead_letters(tenant="acme")} == set()
    [mine] = [d for d in await kernel.events.dead_letters(tenant="default") if d.event.id == "x"]
    assert mine.event.tenant == "default"
    with pytest.raises(Conflict, match="already has a schema"):
        kernel.events.add_schema(EventSchema(topic="shop.order", check=lambda data: []))
