"""The ``sensors`` plugin's hooks: the schema of ``sensor.bin.fill`` events, so a malformed
reading — over HTTP, MQTT or from an edge agent — is refused with its reason, counted, and kept
in the dead-letter queue rather than reaching the dispatcher; and, when ``KERNOS_MQTT_URL``
is set, the MQTT bridge (:mod:`kernos.plugins.sensors.mqtt`) that publishes a broker's
readings as such events."""

from __future__ import annotations

import logging
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


def reading_problems(data: dict[str, Any]) -> list[str]:
    """What is wrong with a bin reading (``kernos.edge.sim.readings.reading_problems``)."""
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
