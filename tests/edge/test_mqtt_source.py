"""``kernos-edge run --source mqtt`` against the real mosquitto that scripts/services.sh starts
and a real kernel + API: valid readings are filtered and forwarded, every malformed message
ends in the kernel's dead-letter queue with its reason and is counted; QoS 1 messages
published while the edge is away arrive when it is back; nothing unbuffered is acked."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernos.edge.errors import EdgeConfigError
from kernos.edge.filter import EdgeFilter, FilterParams
from kernos.edge.mqtt import (
    parse_broker_url,
    parse_reading_message,
    publish,
    topic_bin,
)
from kernos.edge.runner import RunReport, event_id, run_edge
from kernos.edge.sim.params import CityParams
from kernos.edge.sources import MqttSource, SimSource
from kernos.kernel.events import REJECTED
from tests.edge.test_forwarder import Served, served, until

__all__ = ["served"]

EDGE_BIN = Path(sys.executable).with_name("kernos-edge")


def sim_readings(days: int, bins: int, seed: int = 3) -> list[dict[str, Any]]:
    """The simulated city's readings in time order, as sensors would publish them."""
    out = []
    for chunk in SimSource(CityParams(n_bins=bins), seed=seed, days=days):
        for b, ts, lv, t, v in zip(
            chunk.bins, chunk.ts, chunk.level, chunk.temp_c, chunk.voc_ppm, strict=True
        ):
            out.append({"bin": b, "level": round(lv, 4), "temp_c": round(t, 2),
                        "voc_ppm": round(v, 3), "ts": ts})  # fmt: skip
    return out


def expected_ids(node: str, readings: list[dict[str, Any]]) -> list[str]:
    """What a fresh edge filter forwards from ``readings``, as event ids."""
    edge = EdgeFilter(FilterParams.for_city(CityParams(), n_bins=None))
    return [event_id(node, f) for f in edge.process(readings).forwards]


class EdgeRun:
    """``run_edge`` over an :class:`MqttSource` on a thread, as ``kernos-edge run`` runs it."""

    def __init__(self, served: Served, buffer: Path, *, mqtt: str, topic: str, node: str):
        self.source = MqttSource(mqtt, node=node, topic=topic)
        self.report: RunReport | None = None
        self.error: BaseException | None = None

        def work() -> None:
            try:
                self.report = run_edge(
                    self.source,
                    EdgeFilter(FilterParams.for_city(CityParams(), n_bins=None)),
                    kernel_url=served.url,
                    key=served.key,
                    buffer_path=buffer,
                    node=node,
                    drain_timeout_s=30,
                )
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()

    async def subscribed(self) -> None:
        await until(lambda: self.source.subscriber.subscribed, "the edge to subscribe", 30)

    async def stop(self) -> RunReport:
        self.source.stop()
        await asyncio.to_thread(self.thread.join, 60)
        assert not self.thread.is_alive()
        assert self.error is None, self.error
        assert self.report is not None
        return self.report


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test's own: tests share the broker."""
    return f"t{uuid.uuid4().hex[:10]}"


def messages(prefix: str, readings: list[dict[str, Any]]) -> Iterator[tuple[str, bytes]]:
    for r in readings:
        yield f"{prefix}/bins/{r['bin']}/reading", json.dumps(r).encode()


async def stored_ids(served: Served) -> list[str]:
    return [i for i, _ in await served.stored()]


async def test_mqtt_readings_are_filtered_forwarded_and_malformed_ones_dead_lettered(
    served: Served, mqtt_url: str, prefix: str, tmp_path: Path
) -> None:
    readings = sim_readings(days=4, bins=6)
    node = "mq-a"
    run = EdgeRun(served, tmp_path / "edge.sqlite", mqtt=mqtt_url,
                  topic=f"{prefix}/bins/+/reading", node=node)  # fmt: skip
    await run.subscribed()
    good = dict(readings[0])
    no_bin = {k: v for k, v in readings[1].items() if k != "bin"}  # the topic names the bin
    bad: list[tuple[str, bytes]] = [
        (f"{prefix}/bins/1/reading", b"level=0.4"),
        (f"{prefix}/bins/1/reading", b"\xff\xfe"),
        (f"{prefix}/bins/1/reading", b"[0.4, 12.0]"),
        (f"{prefix}/bins/2/reading", json.dumps({"bin": 2, "level": 0.3}).encode()),
        (f"{prefix}/bins/2/reading", json.dumps({**good, "bin": 2, "level": 9.0}).encode()),
        (f"{prefix}/bins/3/reading", b'{"bin": 3, "level": NaN, "temp_c": 1, "voc_ppm": 1, '
                                     b'"ts": 5}'),
    ]  # fmt: skip
    stream = list(messages(prefix, [readings[0]]))
    stream.append((f"{prefix}/bins/{readings[1]['bin']}/reading", json.dumps(no_bin).encode()))
    stream += bad + list(messages(prefix, readings[2:]))
    published = await asyncio.to_thread(publish, parse_broker_url(mqtt_url), stream)
    assert published == len(readings) + len(bad)

    want = expected_ids(node, readings)
    assert len(want) > 10
    await until(lambda: run.source.received >= len(stream), "every message to arrive", 60)
    dead: list[Any] = []

    async def settled() -> bool:
        dead[:] = await served.kernel.events.dead_letters(tenant="default")  # type: ignore[union-attr]
        return len(dead) == len(bad) and len(await stored_ids(served)) == len(want) + len(bad)

    for _ in range(600):
        if await settled():
            break
        await asyncio.sleep(0.05)
    report = await run.stop()

    stored = await served.stored()
    valid = [i for i, _ in stored if "-bad-" not in i]
    assert valid == want  # the edge filter's choice, in order, once each
    assert report.raw == len(readings) and report.forwarded == len(want)
    assert report.malformed == {"not_json": 2, "not_object": 1, "invalid": 3}
    assert report.rejected == len(bad)  # the kernel said it refused each of them
    assert report.left_in_buffer == 0 and report.dead_lettered == 0  # nothing kept locally
    assert all(d.subscriber == REJECTED for d in dead)
    reasons = sorted(d.error for d in dead)
    assert len(reasons) == len(bad)
    for part in ("level must be within", "level must be a number", "missing field 'temp_c'",
                 "missing field 'bin'", "unknown field 'raw'"):  # fmt: skip
        assert any(part in r for r in reasons), (part, reasons)
    raw = sorted(d.event.data["raw"] for d in dead if "raw" in d.event.data)
    assert raw == ["[0.4, 12.0]", "level=0.4", "\ufffd\ufffd"]
    assert "malformed=6 (invalid:3,not_json:2,not_object:1)" in report.line()


async def test_qos1_messages_published_while_the_edge_is_away_arrive_when_it_is_back(
    served: Served, mqtt_url: str, prefix: str, tmp_path: Path
) -> None:
    readings = sim_readings(days=3, bins=5)
    first, second = readings[: len(readings) // 3], readings[len(readings) // 3 :]
    topic, node, broker = f"{prefix}/bins/+/reading", "mq-b", parse_broker_url(mqtt_url)
    buffer = tmp_path / "edge.sqlite"

    run = EdgeRun(served, buffer, mqtt=mqtt_url, topic=topic, node=node)
    await run.subscribed()
    await asyncio.to_thread(publish, broker, list(messages(prefix, first)))
    await until(lambda: run.source.received >= len(first), "the first readings", 60)
    report1 = await run.stop()
    assert report1.raw == len(first)

    # The edge is down: the broker keeps these for its session.
    await asyncio.to_thread(publish, broker, list(messages(prefix, second)))

    run = EdgeRun(served, buffer, mqtt=mqtt_url, topic=topic, node=node)
    await until(lambda: run.source.received >= len(second), "the queued readings", 60)
    report2 = await run.stop()
    assert report2.raw == len(second)  # every one arrived, none twice
    assert await stored_ids(served) == expected_ids(node, first) + expected_ids(node, second)


async def test_messages_are_acked_only_once_buffered(mqtt_url: str, prefix: str) -> None:
    topic, node = f"{prefix}/bins/+/reading", f"mq-{prefix}"
    readings = sim_readings(days=1, bins=3)[:12]
    source = MqttSource(mqtt_url, node=node, topic=topic, batch_wait_s=0.5)

    def publish_when_subscribed() -> None:
        assert source.subscriber.wait_subscribed(30)
        publish(parse_broker_url(mqtt_url), list(messages(prefix, readings)))

    publisher = threading.Thread(target=publish_when_subscribed, daemon=True)
    publisher.start()
    chunks = iter(source)
    first = await asyncio.to_thread(next, chunks)
    publisher.join(30)
    assert first.readings == readings[: len(first)]
    # The consumer dies before asking for more (before buffering): nothing is acked.
    chunks.close()

    again = MqttSource(mqtt_url, node=node, topic=topic, idle_exit_s=2.0)
    redelivered = [r for chunk in await asyncio.to_thread(list, again) for r in chunk.readings]
    assert redelivered == readings  # the broker sent the unacked ones again, and the rest


def test_payloads_and_topics() -> None:
    reading = {"level": 0.5, "temp_c": 10.0, "voc_ppm": 2.0, "ts": 60.0}
    parsed = parse_reading_message("bins/17/reading", json.dumps(reading).encode())
    assert parsed.reading == {**reading, "bin": 17} and parsed.problem is None
    own = parse_reading_message("bins/17/reading", json.dumps({**reading, "bin": 3}).encode())
    assert own.reading is not None and own.reading["bin"] == 3  # the payload's bin wins
    orphan = parse_reading_message("sensors/x/reading", json.dumps(reading).encode())
    assert orphan.kind == "invalid" and orphan.problem == "missing field 'bin'"
    assert topic_bin("site/4/bins/0017/reading") == 4 and topic_bin("a/b") is None
    assert parse_broker_url("mqtt://u:p%40ss@broker").port == 1883
    assert parse_broker_url("mqtts://broker:9000").tls
    assert "p@ss" not in str(parse_broker_url("mqtt://u:p%40ss@broker"))
    for bad in ("http://broker", "mqtt://", "mqtt://h:99999", "mqtt://h/topic"):
        with pytest.raises(EdgeConfigError):
            parse_broker_url(bad)
    with pytest.raises(EdgeConfigError, match="topic filter"):
        MqttSource("mqtt://127.0.0.1:1", node="n", topic="bins/x+/reading")


def test_the_cli_runs_the_mqtt_source_and_publishes_the_simulated_city(
    mqtt_url: str, prefix: str, tmp_path: Path
) -> None:
    # No kernel: the edge buffers what it reads and reports it; the publisher is the CLI's.
    base = [str(EDGE_BIN), "run", "--source", "mqtt", "--mqtt", mqtt_url, "--kernel",
            "http://127.0.0.1:9", "--key", "k", "--buffer", str(tmp_path / "b.sqlite"),
            "--mqtt-topic", f"{prefix}/+/reading", "--name", "cli", "--json",
            "--drain-timeout", "0"]  # fmt: skip
    missing = subprocess.run(base[:4] + base[6:], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert "--source mqtt needs --mqtt URL" in missing.stderr
    # A first, short run opens the session; what is published next waits for the second.
    opened = subprocess.run([*base, "--idle-exit", "1"], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["raw"] == 0
    published = subprocess.run(
        [str(EDGE_BIN), "publish-sim", "--mqtt", mqtt_url, "--bins", "4", "--days", "1",
         "--topic-prefix", prefix],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    count = int(published.stdout.split("published ")[1].split()[0])
    assert count > 50
    ran = subprocess.run([*base, "--idle-exit", "2"], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    stats = json.loads(ran.stdout)
    assert stats["raw"] == count and stats["malformed"] == {}
    assert stats["forwarded"] == stats["left_in_buffer"] > 0  # kept for a kernel to come
