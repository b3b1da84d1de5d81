"""The ``sensors`` plugin's hooks: the schema of ``sensor.bin.fill`` events, so a malformed
reading — over HTTP, MQTT or from an edge agent — is refused with its reason, counted, and kept
in the dead-letter queue rather than reaching the dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kernos.kernel.hookspecs import hookimpl
from kernos.plugins.sensors import TOPIC

if TYPE_CHECKING:  # the bus imports SQLAlchemy: not at import (``kernos --help`` loads this)
    from kernos.kernel.events import EventSchema


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
