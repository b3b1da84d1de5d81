"""The sensors plugin's MQTT bridge against the real mosquitto that scripts/services.sh
starts, on SQLite and PostgreSQL: readings become ``sensor.bin.fill`` events, malformed
messages land in the dead-letter queue with their reasons, a message delivered twice is stored
once, and what is published while the kernel is down arrives when it is back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select

from kernos.edge.mqtt import parse_broker_url, publish
from kernos.kernel.events import REJECTED
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import EventRow
from kernos.plugins.sensors.mqtt import MqttBridge, reading_event_id
from kernos.plugins.sensors.plugin import mqtt_bridge


def reading(b: int, hour: int, **changes: Any) -> dict[str, Any]:
    data = {"bin": b, "level": 0.1 * (hour % 9), "temp_c": 12.0, "voc_ppm": 1.5,
            "ts": 3600.0 * hour}  # fmt: skip
    return {**data, **changes}


@pytest.fixture
def bridged_settings(kernos_settings: Settings, mqtt_url: str) -> Settings:
    """The test kernel's settings with a bridge on a topic and session of this test's own."""
    tag = uuid.uuid4().hex[:10]
    return kernos_settings.model_copy(
        update={
            "mqtt_url": mqtt_url,
            "mqtt_topic": f"t{tag}/bins/+/reading",
            "mqtt_client_id": f"kernos-test-{tag}",
        }
    )


class Bridged:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.mqtt_topic.split("/")[0]
        self.broker = parse_broker_url(str(settings.mqtt_url))
        self.kernel: Kernel | None = None

    @property
    def bridge(self) -> MqttBridge:
        assert self.kernel is not None
        bridge = mqtt_bridge(self.kernel)
        assert bridge is not None
        return bridge

    async def start(self) -> None:
        self.kernel = Kernel(self.settings, plugins=PluginManager(entry_points=False))
        await self.kernel.start()
        subscribed = self.bridge.subscriber.wait_subscribed
        assert await asyncio.to_thread(subscribed, 30), "the bridge did not subscribe"

    async def stop(self) -> None:
        assert self.kernel is not None
        await self.kernel.stop()
        self.kernel = None

    async def publish(self, messages: list[tuple[int, bytes | dict[str, Any]]]) -> None:
        pairs = [(f"{self.prefix}/bins/{b}/reading", body) for b, body in messages]
        await asyncio.to_thread(publish, self.broker, pairs)

    async def until(self, check: Callable[[MqttBridge], bool], what: str) -> None:
        for _ in range(1200):
            if check(self.bridge):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.bridge.stats}")

    async def stored(self) -> list[tuple[str, str, dict[str, Any]]]:
        assert self.kernel is not None
        async with self.kernel.db.read() as session:
            rows = await session.execute(
                select(EventRow.event_id, EventRow.source, EventRow.data)
                .where(EventRow.topic == "sensor.bin.fill")
                .order_by(EventRow.seq)
            )
            return [(r[0], r[1], r[2]) for r in rows]


@pytest.fixture
async def bridged(bridged_settings: Settings) -> AsyncIterator[Bridged]:
    server = Bridged(bridged_settings)
    await server.start()
    try:
        yield server
    finally:
        if server.kernel is not None:
            await server.stop()


async def test_readings_become_events_and_malformed_messages_are_dead_lettered(
    bridged: Bridged,
) -> None:
    good = [reading(b, h) for h in range(4) for b in range(3)]
    no_bin = {k: v for k, v in reading(7, 9).items() if k != "bin"}  # the topic names it
    bad: list[tuple[int, bytes | dict[str, Any]]] = [
        (1, b"{not json"),
        (1, b'"a string"'),
        (2, reading(2, 10, level=3.0)),
        (2, reading(2, 11, temp_c="hot")),
        (2, {"bin": 2, "level": 0.5, "ts": 1.0, "colour": "red"}),
    ]
    messages: list[tuple[int, bytes | dict[str, Any]]] = [(r["bin"], r) for r in good]
    messages += [(7, no_bin), *bad]
    messages += [(good[0]["bin"], good[0]), (1, b"{not json")]  # both delivered twice
    await bridged.publish(messages)
    await bridged.until(lambda b: b.stats.published >= len(messages), "every message")

    stored = await bridged.stored()
    ids = [i for i, _, _ in stored]
    assert len(ids) == len(set(ids)) == len(good) + 1 + len(bad)  # the repeats once each
    want = [reading_event_id(r["bin"], r["ts"]) for r in [*good, reading(7, 9)]]
    assert [i for i in ids if "-bad-" not in i] == want
    assert {source for _, source, _ in stored} == {"mqtt:127.0.0.1"}
    data = {i: d for i, _, d in stored}
    assert data[want[-1]] == reading(7, 9)
    assert bridged.bridge.stats.malformed == len(bad) + 1

    assert bridged.kernel is not None
    letters = await bridged.kernel.events.dead_letters(tenant="default")
    assert len(letters) == len(bad)
    assert {d.subscriber for d in letters} == {REJECTED}
    reasons = " | ".join(d.error for d in letters)
    for part in ("missing field 'bin'", "level must be within 0.0..1.5, got 3.0",
                 "temp_c must be a number, got str", "unknown field 'colour'"):  # fmt: skip
        assert part in reasons
    assert sorted(d.event.data.get("raw", "") for d in letters)[-2:] == [
        '"a string"',
        "{not json",
    ]


async def test_what_is_published_while_the_kernel_is_down_arrives_when_it_is_back(
    bridged: Bridged,
) -> None:
    before = [reading(0, h) for h in range(5)]
    await bridged.publish([(0, r) for r in before])
    await bridged.until(lambda b: b.stats.published >= len(before), "the first readings")
    await bridged.stop()

    during = [reading(b, h) for h in range(5, 40) for b in range(2)]
    await bridged.publish([(r["bin"], r) for r in during])  # QoS 1: the broker keeps them

    await bridged.start()  # same database, same client id: the session is still there
    await bridged.until(lambda b: b.stats.published >= len(during), "the queued readings")
    ids = [i for i, _, _ in await bridged.stored()]
    assert ids == [reading_event_id(r["bin"], r["ts"]) for r in before + during]


async def test_a_batch_is_acked_only_once_committed(bridged_settings: Settings) -> None:
    # A tenant that does not exist: every publish fails, so nothing may be acked...
    ghost = Bridged(bridged_settings.model_copy(update={"mqtt_tenant": "ghost"}))
    await ghost.start()
    readings = [reading(4, h) for h in range(6)]
    await ghost.publish([(4, r) for r in readings])
    await ghost.until(lambda b: b.stats.received >= 6 and b.stats.failures >= 1, "a failure")
    assert ghost.bridge.stats.published == 0
    await ghost.stop()
    # ...and the same session, now publishing where it can, gets every message again.
    fixed = Bridged(bridged_settings)
    await fixed.start()
    try:
        await fixed.until(lambda b: b.stats.published >= 6, "the redelivered readings")
        ids = [i for i, _, _ in await fixed.stored()]
        assert ids == [reading_event_id(4, r["ts"]) for r in readings]
    finally:
        await fixed.stop()


@pytest.mark.parametrize(
    ("update", "logged"),
    [
        ({"mqtt_topic": "bins/#/reading"}, "topic filter"),
        ({"mqtt_tenant": "Not A Tenant"}, "KERNOS_MQTT_TENANT"),
    ],
)
async def test_bad_bridge_settings_leave_the_bridge_off_but_keep_the_schema(
    kernos_settings: Settings,
    caplog: pytest.LogCaptureFixture,
    update: dict[str, str],
    logged: str,
) -> None:
    settings = kernos_settings.model_copy(update={"mqtt_url": "mqtt://127.0.0.1:1", **update})
    async with Kernel(settings, plugins=PluginManager(entry_points=False)) as kernel:
        assert mqtt_bridge(kernel) is None
        assert logged in caplog.text and "the MQTT bridge is off" in caplog.text
        published = await kernel.events.publish_batch([_event({"bin": 1})])
        assert published.rejected  # the sensors plugin still checks readings


def _event(data: dict[str, Any]) -> Any:
    from kernos.kernel.events import Event

    return Event(topic="sensor.bin.fill", tenant="default", source="test", data=data)


def test_a_bad_broker_url_is_refused_with_the_setting(kernos_home: Any) -> None:
    from kernos.kernel.errors import ConfigError
    from kernos.kernel.settings import load_settings

    with pytest.raises(ConfigError, match="KERNOS_MQTT_URL|mqtt_url"):
        load_settings(home=kernos_home, mqtt_url="http://broker:1883")
    assert load_settings(home=kernos_home).mqtt_topic == "bins/+/reading"
