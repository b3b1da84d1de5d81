"""The ``sensors`` plugin's MQTT bridge: readings from a broker become ``sensor.bin.fill``
events, for sensors that talk to the kernel without an edge agent.

Started by the plugin's ``on_startup`` when ``KERNOS_MQTT_URL`` is set, once the kernel is
ready (so the topic's schema is in force), and stopped by ``on_shutdown``. It subscribes
``KERNOS_MQTT_TOPIC`` at QoS 1 on a persistent session (client id ``KERNOS_MQTT_CLIENT_ID``),
reads each message as :func:`kernos.edge.mqtt.parse_reading_message` does, and publishes them
through the event bus (``publish_batch``) in batches of up to ``max_batch`` messages gathered
within ``max_wait_s``, in tenant ``KERNOS_MQTT_TENANT`` with source ``mqtt:<broker host>``.

- **Ids**: a reading's event id is ``mqtt-{bin}-{ts in ms}``; a malformed message's is
  ``mqtt-bad-{digest of topic and payload}``. A message the broker delivers again (QoS 1 after
  a reconnect) is therefore stored once.
- **Malformed messages** are published as they came (``{"raw": text}`` when not a JSON
  object): the topic's schema refuses them into the dead-letter queue with the reason.
- **Acknowledgements** are manual: a message is acked to the broker only after its batch has
  committed. A kernel that stops or crashes before that gets it again on its next start.
- **Backpressure**: paho's network thread hands messages to the event loop through a bounded
  queue. The broker sends at most ``queue_size`` unacknowledged QoS 1 messages (MQTT v5
  Receive Maximum), so they always fit; QoS 0 messages are not counted by the broker, and when
  the queue is full the network thread waits for room, which stops it reading the socket and
  lets TCP push back on the broker. While publishing fails (storage down), the batch is
  retried with backoff and nothing is acked, so the broker holds the rest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernos.edge.errors import EdgeConfigError
from kernos.edge.mqtt import (
    Message,
    Subscriber,
    malformed_event_id,
    parse_broker_url,
    parse_reading_message,
)
from kernos.kernel.errors import ConfigError, KernosError
from kernos.kernel.events import Event
from kernos.kernel.identity import check_name
from kernos.plugins.sensors import TOPIC

if TYPE_CHECKING:
    from kernos.kernel.kernel import Kernel

__all__ = ["BridgeStats", "MqttBridge", "reading_event_id"]

log = logging.getLogger(__name__)

_ID_PREFIX = "mqtt"


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("MQTT bridge stopped: %r", task.exception(), exc_info=task.exception())


def reading_event_id(bin_id: int, ts: float) -> str:
    """The event id of a valid reading: the same (bin, ts) always gets the same id."""
    return f"{_ID_PREFIX}-{bin_id}-{round(ts * 1000)}"


@dataclass(slots=True)
class BridgeStats:
    """What the bridge did since it started."""

    received: int = 0
    """Messages received (redeliveries included)."""
    published: int = 0
    """Messages published as events and acked (redeliveries included)."""
    malformed: int = 0
    """Of those, messages that were not valid readings (refused into the dead-letter queue)."""
    batches: int = 0
    """Batches committed."""
    failures: int = 0
    """Batches that failed to publish and were retried."""


class MqttBridge:
    """Subscribes to a broker and publishes its readings on the kernel's event bus."""

    def __init__(
        self,
        kernel: Kernel,
        url: str,
        *,
        topic: str,
        tenant: str,
        client_id: str,
        max_batch: int = 500,
        max_wait_s: float = 0.2,
        queue_size: int = 1000,
    ) -> None:
        if max_batch < 1 or queue_size < 1 or max_wait_s < 0:
            raise ConfigError("MQTT bridge: max_batch and queue_size must be positive")
        try:
            self.url = parse_broker_url(url)
            self._subscriber = Subscriber(
                self.url,
                self._hand_over,
                client_id=client_id,
                topic=topic,
                qos=1,
                receive_maximum=min(queue_size, 65_535),
            )
        except EdgeConfigError as exc:
            raise ConfigError(f"MQTT bridge: {exc}") from None
        try:
            check_name(tenant, what="tenant")
        except KernosError as exc:
            raise ConfigError(f"MQTT bridge: KERNOS_MQTT_TENANT: {exc}") from None
        self.kernel = kernel
        self.tenant = tenant
        self.source = f"mqtt:{self.url.host}"[:127]
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BridgeStats()
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=queue_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def subscriber(self) -> Subscriber:
        """The MQTT subscriber (``wait_subscribed`` tells when messages can flow)."""
        return self._subscriber

    def start(self) -> None:
        """Start the bridge's task: it waits until the kernel is ready, then subscribes."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="kernos-mqtt-bridge")
        self._task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        """Stop: what was received but not committed stays unacked, for the broker to send
        again next time. Idempotent."""
        self._closing = True
        task, self._task = self._task, None
        # Cancel until it is done: a cancellation that lands as a queue get completes can
        # be swallowed (Python 3.11), and the loop would wait for the next message.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task is not None and not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()  # a crash was logged by _report_crash
        await asyncio.to_thread(self._subscriber.stop)

    # -- paho's network thread -----------------------------------------------------------

    def _hand_over(self, message: Message) -> None:
        """Put ``message`` on the queue, waiting for room (backpressure; see the module)."""
        loop = self._loop
        if self._closing or loop is None:
            return  # not acked: the broker sends it again
        try:
            future = asyncio.run_coroutine_threadsafe(self._queue.put(message), loop)
        except RuntimeError:  # the loop is closed
            return
        while True:
            try:
                future.result(timeout=0.5)
                return
            except concurrent.futures.TimeoutError:
                if self._closing:
                    future.cancel()
                    return
            except concurrent.futures.CancelledError:
                return

    # -- the event loop ------------------------------------------------------------------

    async def _run(self) -> None:
        await self.kernel.ready.wait()
        await asyncio.to_thread(self._subscriber.start)
        log.info("MQTT bridge: subscribing %s on %s", self._subscriber.topic, self.url)
        while not self._closing:
            batch = await self._gather()
            await self._publish(batch)

    async def _gather(self) -> list[Message]:
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            left = deadline - loop.time()
            if len(batch) >= self.max_batch or left <= 0:
                break
            try:
                async with asyncio.timeout(left):
                    batch.append(await self._queue.get())
            except TimeoutError:
                break
        self.stats.received += len(batch)
        return batch

    def _events(self, batch: list[Message]) -> tuple[list[Event], int]:
        events: list[Event] = []
        malformed = 0
        for message in batch:
            parsed = parse_reading_message(message.topic, message.payload)
            if parsed.reading is not None:
                event_id = reading_event_id(parsed.reading["bin"], parsed.reading["ts"])
            else:
                malformed += 1
                event_id = malformed_event_id(_ID_PREFIX, message.topic, message.payload)
            try:
                event = Event(
                    topic=TOPIC, tenant=self.tenant, source=self.source, data=parsed.payload,
                    id=event_id,
                )  # fmt: skip
            except KernosError:  # data the bus cannot store as it came: keep it as text
                raw = message.payload.decode("utf-8", "replace")[:4096]
                event = Event(
                    topic=TOPIC, tenant=self.tenant, source=self.source, data={"raw": raw},
                    id=event_id,
                )  # fmt: skip
            events.append(event)
        return events, malformed

    async def _publish(self, batch: list[Message]) -> None:
        """Publish ``batch`` until it commits (retrying with backoff), then ack it."""
        events, malformed = self._events(batch)
        delay = 0.5
        while True:
            try:
                published = await self.kernel.events.publish_batch(events)
                break
            except (KernosError, OSError) as exc:
                self.stats.failures += 1
                log.warning("MQTT bridge: publishing %d events failed (%s)", len(events), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        for message in batch:
            self._subscriber.ack(message)
        self.stats.batches += 1
        self.stats.published += len(batch)
        self.stats.malformed += malformed
        if published.rejected:
            log.info("MQTT bridge: %d malformed reading(s) dead-lettered", len(published.rejected))
