"""Where the edge agent's readings come from.

``sim``: the simulated city (:mod:`kernos.edge.sim`) on an accelerated clock. Its bins are
emptied by a simple stand-in for the kernel's routing (each bin at its own hour of the shift,
when its true level has reached ``empty_at``), so levels rise and fall as in a served city.
Readings come out one simulated reporting interval at a time, column-wise, in time order.

``mqtt``: readings published to an MQTT broker (:mod:`kernos.edge.mqtt`, one JSON reading
per message), in chunks of :class:`MessageChunk`: the valid readings, and the malformed
messages with their reasons, which the runner forwards too so the kernel keeps them in its
dead-letter queue. A chunk's messages are acknowledged to the broker only when the next chunk
is asked for, that is once the runner has buffered this one: a crash before that gets them
delivered again (persistent session), and their deterministic event ids de-duplicate them.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kernos.edge.errors import EdgeConfigError
from kernos.edge.mqtt import (
    DEFAULT_TOPIC,
    Message,
    Subscriber,
    malformed_event_id,
    parse_broker_url,
    parse_reading_message,
)

if TYPE_CHECKING:
    from kernos.edge.sim.params import CityParams
    from kernos.edge.sim.readings import Reading, ReadingBatch
    from kernos.edge.sim.sim import DayRecord

__all__ = [
    "SOURCES",
    "MalformedMessage",
    "MessageChunk",
    "MqttSource",
    "ReadingColumns",
    "SimSource",
    "open_source",
    "sim_days",
]

log = logging.getLogger(__name__)

SOURCES: Final = ("sim", "mqtt")
"""Source names ``kernos-edge run --source`` knows."""


@dataclass(frozen=True, slots=True)
class ReadingColumns:
    """Readings column-wise (equal lengths, time order): what the filter's fast path takes."""

    bins: list[int]
    ts: list[float]
    level: list[float]
    temp_c: list[float]
    voc_ppm: list[float]

    def __len__(self) -> int:
        """The number of readings."""
        return len(self.bins)


def sim_days(
    params: CityParams, *, seed: int, days: int, empty_at: float = 0.8
) -> Iterator[tuple[DayRecord, ReadingBatch]]:
    """Run the simulated city day by day under the stand-in collection policy; yield each
    day's record (true levels) and its sensor readings."""
    import numpy as np

    from kernos.edge.sim.city import City
    from kernos.edge.sim.readings import SensorModel
    from kernos.edge.sim.sim import Simulation

    city = City.generate(params, seed)
    sim = Simulation(city, params, seed, days=days)
    sensors = SensorModel(city, params, seed, days=days)
    n = city.n_bins
    # Each bin has its own hour in the shift, so emptyings fall across the fill window.
    empty_hour = params.shift_start_h + (np.arange(n) % 8) * min(1.0, params.shift_h / 8)
    hours = np.unique(empty_hour).tolist()
    for _ in range(days):
        due = np.zeros(n, dtype=bool)
        for hour in hours:
            due |= (empty_hour == hour) & (sim.level_at(hour) >= empty_at)
        bins = np.flatnonzero(due)
        if bins.size:
            sim.empty(bins, hour=empty_hour[bins])
        record = sim.step_day()
        yield record, sensors.readings(record)


def day_columns(batch: ReadingBatch) -> Iterator[ReadingColumns]:
    """One day's readings as one :class:`ReadingColumns` per reporting time."""
    import numpy as np

    ts = batch.ts.tolist()
    for row in range(len(ts)):
        bins = np.flatnonzero(batch.present[row])
        yield ReadingColumns(
            bins=bins.tolist(),
            ts=[ts[row]] * int(bins.size),
            level=batch.level[row, bins].tolist(),
            temp_c=batch.temp_c[row, bins].tolist(),
            voc_ppm=batch.voc_ppm[row, bins].tolist(),
        )


class SimSource:
    """The simulated city's sensors, ``speed`` simulated hours per real second (0: flat out).

    Iterating yields one :class:`ReadingColumns` per reporting interval; :meth:`stop` ends
    the iteration at the next interval.
    """

    name = "sim"

    def __init__(
        self,
        params: CityParams,
        *,
        seed: int = 1,
        days: int = 1,
        speed: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if days < 1:
            raise EdgeConfigError("--days must be at least 1")
        if speed < 0:
            raise EdgeConfigError("--speed must be 0 (as fast as possible) or positive")
        self.params = params
        self.seed = seed
        self.days = days
        self.speed = speed
        self._sleep = sleep
        self._stopped = False

    def stop(self) -> None:
        """End the iteration at the next reporting interval."""
        self._stopped = True

    def __iter__(self) -> Iterator[ReadingColumns]:
        """Readings, interval by interval, paced by ``speed``."""
        interval_h = self.params.reporting_interval_h
        started = time.monotonic()
        done_h = 0.0
        for _, batch in sim_days(self.params, seed=self.seed, days=self.days):
            for columns in day_columns(batch):
                if self._stopped:
                    return
                yield columns
                done_h += interval_h
                if self.speed:
                    ahead = done_h / self.speed - (time.monotonic() - started)
                    if ahead > 0:
                        self._sleep(ahead)


@dataclass(frozen=True, slots=True)
class MalformedMessage:
    """A message that is not a valid reading, to be forwarded so the kernel dead-letters it."""

    payload: dict[str, Any]
    """The message as parsed, or ``{"raw": text}``."""
    kind: str
    """One of :data:`~kernos.edge.mqtt.MALFORMED_KINDS`."""
    reason: str
    event_id: str
    """Deterministic (topic and payload), so a redelivery is kept once."""


@dataclass(frozen=True, slots=True)
class MessageChunk:
    """Messages received together: the valid readings, in arrival order, and the others."""

    readings: list[Reading]
    malformed: list[MalformedMessage]

    def __len__(self) -> int:
        """The number of messages."""
        return len(self.readings) + len(self.malformed)


class MqttSource:
    """Readings from an MQTT broker (see the module docstring), until :meth:`stop`, or until
    no message came for ``idle_exit_s`` seconds (0: never).

    The client id is ``kernos-edge-{node}``: keep ``node`` stable, it names the broker's
    session that holds the messages published while this edge agent is away.
    """

    name = "mqtt"

    def __init__(
        self,
        url: str,
        *,
        node: str,
        topic: str = DEFAULT_TOPIC,
        qos: int = 1,
        batch_size: int = 500,
        batch_wait_s: float = 0.2,
        idle_exit_s: float = 0.0,
    ) -> None:
        if batch_size < 1 or batch_wait_s < 0 or idle_exit_s < 0:
            raise EdgeConfigError("batch_size must be positive, the waits not negative")
        self.url = parse_broker_url(url)
        self.node = node
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self.idle_exit_s = idle_exit_s
        self._inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        # The broker sends at most this many unacknowledged messages: two chunks' worth,
        # so one is received while the runner buffers the other.
        self.subscriber = Subscriber(
            self.url,
            self._inbox.put,
            client_id=f"kernos-edge-{node}",
            topic=topic,
            qos=qos,
            receive_maximum=min(65_535, 2 * batch_size),
        )
        self._stopped = False
        self.received = 0
        """Messages received so far (redeliveries included)."""

    def stop(self) -> None:
        """End the iteration within a fraction of a second (safe from a signal handler)."""
        self._stopped = True

    def __iter__(self) -> Iterator[MessageChunk]:
        """Chunks of up to ``batch_size`` messages, each gathered within ``batch_wait_s``."""
        self.subscriber.start()
        acked: list[Message] = []
        last_message = time.monotonic()
        try:
            while not self._stopped:
                for message in acked:
                    self.subscriber.ack(message)
                acked = []
                try:
                    first = self._inbox.get(timeout=0.1)
                except queue.Empty:
                    idle = time.monotonic() - last_message
                    if self.idle_exit_s and idle >= self.idle_exit_s:
                        return
                    continue
                batch = self._gather(first)
                last_message = time.monotonic()
                self.received += len(batch)
                yield self._chunk(batch)
                acked = batch  # asked for the next chunk: this one is buffered
            for message in acked:
                self.subscriber.ack(message)
        finally:
            self.subscriber.stop()

    def _gather(self, first: Message) -> list[Message]:
        batch = [first]
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.batch_size:
            left = deadline - time.monotonic()
            try:
                batch.append(
                    self._inbox.get(timeout=left) if left > 0 else self._inbox.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def _chunk(self, batch: list[Message]) -> MessageChunk:
        readings: list[Reading] = []
        malformed: list[MalformedMessage] = []
        for message in batch:
            parsed = parse_reading_message(message.topic, message.payload)
            if parsed.reading is not None:
                readings.append(parsed.reading)
                continue
            assert parsed.kind is not None and parsed.problem is not None
            malformed.append(
                MalformedMessage(
                    payload=parsed.payload,
                    kind=parsed.kind,
                    reason=parsed.problem,
                    event_id=malformed_event_id(self.node, message.topic, message.payload),
                )
            )
            log.warning("malformed message on %s: %s", message.topic, parsed.problem)
        return MessageChunk(readings, malformed)


def open_source(
    name: str,
    *,
    params: CityParams,
    seed: int,
    days: int,
    speed: float,
    mqtt_url: str | None = None,
    mqtt_topic: str = DEFAULT_TOPIC,
    mqtt_qos: int = 1,
    node: str = "edge",
    idle_exit_s: float = 0.0,
) -> SimSource | MqttSource:
    """The source called ``name``; :class:`EdgeConfigError` for one not available."""
    if name == "sim":
        return SimSource(params, seed=seed, days=days, speed=speed)
    if name == "mqtt":
        if not mqtt_url:
            raise EdgeConfigError("--source mqtt needs --mqtt URL (mqtt://host:port)")
        return MqttSource(
            mqtt_url, node=node, topic=mqtt_topic, qos=mqtt_qos, idle_exit_s=idle_exit_s
        )
    raise EdgeConfigError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
