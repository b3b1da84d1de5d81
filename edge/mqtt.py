"""MQTT for sensor readings: broker URLs, reading messages, a subscriber and a publisher.

Shared by the edge agent (``kernos-edge run --source mqtt``, ``kernos-edge publish-sim``) and
the kernel's bridge (``kernos.plugins.sensors.mqtt``), so both read a message the same way.

**Messages.** One reading per message, topic ``bins/{bin}/reading`` by default, payload a JSON
object in the :class:`~kernos.edge.sim.readings.Reading` format. When the payload has no
``bin``, the bin is taken from the topic: its first level made only of digits. A message that
is not UTF-8 JSON, not an object, or not a valid reading (:func:`reading_problems`) is
*malformed*: :func:`parse_reading_message` keeps it with its reason, as parsed (non-finite
numbers as strings) or as ``{"raw": text}``, so it can be published where the kernel's
``sensor.bin.fill`` schema refuses it into the dead-letter queue. Nothing is dropped here.

**Subscriber.** MQTT v5 through paho-mqtt 2 (the ``mqtt`` extra). A persistent session
(``clean_start`` false, a session expiry, a stable client id), so QoS 1 messages published
while the subscriber is away are queued by the broker and arrive when it comes back.
Acknowledgements are manual: the owner acks a message only once it is durably somewhere
(the edge's buffer, the kernel's database); one not acked is delivered again after a
reconnect. ``receive_maximum`` bounds the unacknowledged messages the broker sends at once,
which is the backpressure. paho reconnects by itself with exponential backoff.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

from kernos.edge.errors import EdgeConfigError
from kernos.edge.sim.readings import Reading, reading_problems

if TYPE_CHECKING:
    from paho.mqtt.client import Client, MQTTMessage

__all__ = [
    "DEFAULT_TOPIC",
    "MALFORMED_KINDS",
    "BrokerUrl",
    "Message",
    "ParsedMessage",
    "Subscriber",
    "check_topic_filter",
    "malformed_event_id",
    "parse_broker_url",
    "parse_reading_message",
    "publish",
    "reading_topic",
    "topic_bin",
]

log = logging.getLogger(__name__)

DEFAULT_TOPIC: Final = "bins/+/reading"
"""The topic filter subscribers use by default; publishers use ``bins/{bin}/reading``."""
MALFORMED_KINDS: Final = ("not_json", "not_object", "invalid")
"""Why a message is malformed: not UTF-8 JSON, JSON but not an object, not a valid reading."""
_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
_RAW_MAX: Final = 4096  # characters of a malformed payload kept as {"raw": ...}
_MISSING: Final = "paho-mqtt is not installed; install it with: pip install 'kernos-edge[mqtt]'"


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """A broker address: ``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` for TLS)."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        """Whether the connection uses TLS (``mqtts``)."""
        return self.scheme == "mqtts"

    def __str__(self) -> str:
        """The URL without its password (safe to log)."""
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """``url`` as a :class:`BrokerUrl`; :class:`EdgeConfigError` when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EdgeConfigError(f"bad MQTT broker URL {url!r}: {exc}") from None
    if parts.scheme not in _PORTS or not parts.hostname:
        raise EdgeConfigError(
            f"bad MQTT broker URL {url!r}: use mqtt://host[:port] or mqtts://host[:port]"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EdgeConfigError(f"bad MQTT broker URL {url!r}: no path or query allowed")
    return BrokerUrl(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or _PORTS[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def check_topic_filter(topic: str) -> str:
    """``topic`` if it is a valid MQTT topic filter; :class:`EdgeConfigError` otherwise."""
    levels = topic.split("/")
    bad = (
        not topic
        or len(topic) > 1024
        or "\x00" in topic
        or any(("+" in lv and lv != "+") or ("#" in lv and lv != "#") for lv in levels)
        or "#" in levels[:-1]
    )
    if bad:
        raise EdgeConfigError(
            f"bad MQTT topic filter {topic!r}: '+' and '#' must fill a whole level, '#' only last"
        )
    return topic


def reading_topic(bin_id: int, *, prefix: str = "bins") -> str:
    """The topic a bin's readings are published on: ``{prefix}/{bin}/reading``."""
    return f"{prefix}/{bin_id}/reading"


def topic_bin(topic: str) -> int | None:
    """The bin id a topic names: its first level made only of digits (``None`` if none)."""
    for level in topic.split("/"):
        if level.isascii() and level.isdigit():
            return int(level)
    return None


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A message read as a reading: valid (``reading`` set) or malformed (``problem`` set)."""

    payload: dict[str, Any]
    """The event data to publish: the reading, or the malformed message as parsed (JSON-safe),
    or ``{"raw": text}`` when it was not a JSON object."""
    reading: Reading | None = None
    kind: str | None = None
    """For a malformed message, one of :data:`MALFORMED_KINDS`."""
    problem: str | None = None
    """For a malformed message, what is wrong with it."""


def parse_reading_message(topic: str, payload: bytes) -> ParsedMessage:
    """Read one MQTT message as a reading (see the module docstring); never raises."""
    try:
        text = payload.decode("utf-8")
        obj = json.loads(text)
    except UnicodeDecodeError as exc:
        raw = payload.decode("utf-8", "replace")[:_RAW_MAX]
        return ParsedMessage({"raw": raw}, kind="not_json", problem=f"payload is not UTF-8: {exc}")
    except ValueError as exc:
        return ParsedMessage(
            {"raw": text[:_RAW_MAX]}, kind="not_json", problem=f"payload is not JSON: {exc}"
        )
    if not isinstance(obj, dict):
        return ParsedMessage(
            {"raw": text[:_RAW_MAX]},
            kind="not_object",
            problem=f"a reading must be a JSON object, got {_json_type(obj)}",
        )
    if "bin" not in obj:
        from_topic = topic_bin(topic)
        if from_topic is not None:
            obj = {**obj, "bin": from_topic}
    problems = reading_problems(obj)
    if problems:
        return ParsedMessage(_json_safe(obj), kind="invalid", problem="; ".join(problems))
    return ParsedMessage(obj, reading=Reading(**obj))  # type: ignore[typeddict-item]


def malformed_event_id(prefix: str, topic: str, payload: bytes) -> str:
    """A deterministic event id for a malformed message (``{prefix}-bad-{digest}``): the same
    message redelivered gets the same id, so the kernel keeps it once."""
    digest = hashlib.sha256(topic.encode() + b"\x00" + payload).hexdigest()[:24]
    return f"{prefix}-bad-{digest}"


def _json_type(obj: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if obj is None else names.get(type(obj), type(obj).__name__)


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite numbers as strings (the kernel stores strict JSON)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


# -- Subscribing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One received message; hand it back to :meth:`Subscriber.ack` once it is kept."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    connection: int
    """Which connection it arrived on (an ack on a later one would name another message)."""


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise EdgeConfigError(_MISSING) from None
    return mqtt


def _new_client(url: BrokerUrl, client_id: str, *, manual_ack: bool) -> Client:
    mqtt = _paho()
    client: Client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set()
    return client


class Subscriber:
    """Subscribes ``topic`` on a persistent session and calls ``on_message`` for each
    message, on paho's network thread (keep it short; it may block to push back).

    :meth:`start` returns at once and paho connects in the background, retrying with
    exponential backoff between ``backoff_min_s`` and ``backoff_max_s`` for as long as it
    takes; :meth:`wait_subscribed` waits for the subscription. :meth:`stop` disconnects and
    keeps the session: what arrives meanwhile is queued by the broker for up to
    ``session_expiry_s``.
    """

    def __init__(
        self,
        url: BrokerUrl,
        on_message: Callable[[Message], None],
        *,
        client_id: str,
        topic: str = DEFAULT_TOPIC,
        qos: int = 1,
        receive_maximum: int = 1000,
        session_expiry_s: int = 7 * 86_400,
        backoff_min_s: int = 1,
        backoff_max_s: int = 30,
        keepalive_s: int = 30,
    ) -> None:
        if qos not in (0, 1):
            raise EdgeConfigError(f"MQTT QoS must be 0 or 1, got {qos}")
        if not 0 < len(client_id) <= 64:
            raise EdgeConfigError("MQTT client id must be 1-64 characters")
        if not 1 <= receive_maximum <= 65_535:
            raise EdgeConfigError("receive_maximum must be 1-65535")
        self.url = url
        self.topic = check_topic_filter(topic)
        self.qos = qos
        self.client_id = client_id
        self._on_message = on_message
        self._receive_maximum = receive_maximum
        self._session_expiry_s = session_expiry_s
        self._keepalive_s = keepalive_s
        self._subscribed = threading.Event()
        self._connection = 0
        self._client = _new_client(url, client_id, manual_ack=True)
        self._client.reconnect_delay_set(backoff_min_s, backoff_max_s)
        self._client.on_connect = self._connected
        self._client.on_subscribe = self._subscribed_cb
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._message

    def start(self) -> None:
        """Connect in the background (paho's own thread) and subscribe on every connect."""
        mqtt = _paho()
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        self._client.connect_async(
            self.url.host,
            self.url.port,
            keepalive=self._keepalive_s,
            clean_start=False,
            properties=props,
        )
        if self._client.loop_start() != mqtt.MQTT_ERR_SUCCESS:
            raise EdgeConfigError("could not start the MQTT client's network thread")

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until the broker has confirmed the subscription; whether it has."""
        return self._subscribed.wait(timeout)

    @property
    def subscribed(self) -> bool:
        """Whether the subscription is confirmed on the current connection."""
        return self._subscribed.is_set()

    def ack(self, message: Message) -> None:
        """Acknowledge ``message`` (QoS 1): the broker forgets it. One from an earlier
        connection is skipped; the broker delivers it again and its owner de-duplicates."""
        if message.qos and message.connection == self._connection:
            self._client.ack(message.mid, message.qos)

    def stop(self) -> None:
        """Disconnect (keeping the session on the broker) and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
        self._subscribed.clear()

    # -- paho's callbacks, on its network thread ---------------------------------------

    def _connected(self, client: Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.url, reason)
            return
        self._connection += 1
        log.info(
            "connected to MQTT broker %s as %s (session present: %s)",
            self.url,
            self.client_id,
            flags.session_present,
        )
        client.subscribe(self.topic, qos=self.qos)

    def _subscribed_cb(self, _c: Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("MQTT broker %s refused subscribing %s: %s", self.url, self.topic, failed[0])
            return
        self._subscribed.set()

    def _disconnected(self, _c: Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._subscribed.clear()
        if reason.is_failure:
            log.warning("lost the MQTT broker %s (%s); reconnecting", self.url, reason)

    def _message(self, _c: Client, _u: Any, msg: MQTTMessage) -> None:
        self._on_message(
            Message(
                topic=msg.topic,
                payload=bytes(msg.payload),
                qos=msg.qos,
                mid=msg.mid,
                connection=self._connection,
            )
        )


# -- Publishing --------------------------------------------------------------------------------


def publish(
    url: BrokerUrl,
    messages: Iterable[tuple[str, bytes | Mapping[str, Any]]],
    *,
    qos: int = 1,
    client_id: str = "",
    timeout_s: float = 60.0,
) -> int:
    """Publish ``(topic, payload)`` pairs (bytes, or a mapping sent as JSON) and wait until
    the broker has taken every QoS 1 message; return how many were published. Raises
    :class:`EdgeConfigError` (bad QoS, paho missing) and :class:`ConnectionError`."""
    if qos not in (0, 1):
        raise EdgeConfigError(f"MQTT QoS must be 0 or 1, got {qos}")
    client = _new_client(url, client_id, manual_ack=False)
    client.max_inflight_messages_set(1000)
    try:
        client.connect(url.host, url.port, keepalive=30)
    except OSError as exc:
        raise ConnectionError(f"cannot reach MQTT broker {url}: {exc}") from None
    client.loop_start()
    infos = []
    try:
        deadline = time.monotonic() + timeout_s
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise ConnectionError(f"MQTT broker {url} did not accept the connection")
            time.sleep(0.01)
        for topic, payload in messages:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            infos.append(client.publish(topic, body, qos=qos))
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise ConnectionError(f"MQTT broker {url} did not take every message in time")
    finally:
        client.disconnect()
        client.loop_stop()
    return len(infos)
