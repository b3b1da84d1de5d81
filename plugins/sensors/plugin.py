"""The ``sensors`` plugin's hooks: the schema of ``sensor.bin.fill`` events, so a malformed
reading — over HTTP, MQTT or from an edge agent — is refused with its reason, counted, and kept
in the dead-letter queue rather than reaching the dispatcher; and, when ``KERNOS_MQTT_URL``
is set, the MQTT bridge (:mod:`kernos.plugins.sensors.mqtt`) that publishes a broker's
readings as such events."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from kernos.kernel.errors import ConfigError
from kernos.kernel.hookspecs import hookimpl
from kernos.plugins.sensors import TOPIC

if TYPE_CHECKING:  # the bus imports SQLAlchemy: not at import (``kernos --help`` loads this)
    from kernos.kernel.events import EventSchema
    from kernos.kernel.kernel import Kernel
    from kernos.plugins.sensors.mqtt import MqttBridge

log = logging.getLogger(__name__)


_PLAIN = frozenset({"bin", "level", "temp_c", "voc_ppm", "ts"})
_NUMBER = (float, int)


@functools.cache
def _ranges() -> tuple[tuple[float, float], ...]:
    from kernos.edge.sim.readings import LEVEL_RANGE, TEMP_RANGE, VOC_RANGE

    return LEVEL_RANGE, TEMP_RANGE, VOC_RANGE


def reading_problems(data: dict[str, Any]) -> list[str]:
    """What is wrong with a bin reading (``kernos.edge.sim.readings.reading_problems``).

    On the ingest path (tens of thousands a second): a plain reading whose five numbers are in
    range is accepted without building any message; anything else gets the full check."""
    if data.keys() == _PLAIN:
        (lo_l, hi_l), (lo_t, hi_t), (lo_v, hi_v) = _ranges()
        b, level, temp, voc, ts = (data[k] for k in ("bin", "level", "temp_c", "voc_ppm", "ts"))
        if (
            type(b) is int
            and b >= 0
            and type(level) in _NUMBER
            and lo_l <= level <= hi_l
            and type(temp) in _NUMBER
            and lo_t <= temp <= hi_t
            and type(voc) in _NUMBER
            and lo_v <= voc <= hi_v
            and type(ts) in _NUMBER
            and 0.0 <= ts < math.inf
        ):
            return []
    from kernos.edge.sim.readings import reading_problems as problems

    return problems(data)


@hookimpl
def register_event_schemas(register: Callable[[EventSchema], None]) -> None:
    """``sensor.bin.fill``: bin, level, temp_c, voc_ppm and ts, in range."""
    from kernos.kernel.events import EventSchema

    register(
        EventSchema(
            topic=TOPIC,
            check=reading_problems,
            description="a bin's fill reading: bin, level, temp_c, voc_ppm, ts",
        )
    )


_bridges: WeakKeyDictionary[Kernel, MqttBridge] = WeakKeyDictionary()


def mqtt_bridge(kernel: Kernel) -> MqttBridge | None:
    """The MQTT bridge of ``kernel``, when ``KERNOS_MQTT_URL`` set one up."""
    return _bridges.get(kernel)


@hookimpl
def on_startup(kernel: Kernel) -> None:
    """Start the MQTT bridge when ``KERNOS_MQTT_URL`` is set (it subscribes once the kernel
    is ready). Without paho-mqtt the bridge stays off with an error in the log, rather than
    failing the plugin: that would also take the reading schema away from HTTP ingest."""
    settings = kernel.settings
    if not settings.mqtt_url:
        return
    from kernos.plugins.sensors.mqtt import MqttBridge

    try:
        bridge = MqttBridge(
            kernel,
            settings.mqtt_url,
            topic=settings.mqtt_topic,
            tenant=settings.mqtt_tenant,
            client_id=settings.mqtt_client_id,
        )
    except ConfigError as exc:
        log.error("%s; the MQTT bridge is off", exc)
        return
    bridge.start()
    _bridges[kernel] = bridge


@hookimpl
async def on_shutdown(kernel: Kernel) -> None:
    """Stop the MQTT bridge, if this kernel runs one."""
    bridge = _bridges.pop(kernel, None)
    if bridge is not None:
        await bridge.stop()
