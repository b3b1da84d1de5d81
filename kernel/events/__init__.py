"""The kernel's event bus: topics, subscribers, triggers and the dead-letter queue.

``EventBus`` (in ``bus``) commits every event before dispatching it and delivers it at least
once to each matching subscriber; ``Trigger`` maps a topic pattern to an agent the bus spawns
once per event; dead letters can be inspected and replayed. The SQL side is ``store``, topic
names and patterns are ``topics``, the records ``records``.
"""

from __future__ import annotations

from kernos.kernel.events.bus import EventBus, Published
from kernos.kernel.events.records import (
    REJECTED,
    DeadLetter,
    Event,
    EventHandler,
    EventSchema,
    InputMap,
    Spawner,
    Trigger,
)
from kernos.kernel.events.store import BUS_PRINCIPAL, DeliveryStatus
from kernos.kernel.events.topics import check_pattern, check_topic, topic_matches

__all__ = [
    "BUS_PRINCIPAL",
    "REJECTED",
    "DeadLetter",
    "DeliveryStatus",
    "Event",
    "EventBus",
    "EventHandler",
    "EventSchema",
    "InputMap",
    "Published",
    "Spawner",
    "Trigger",
    "check_pattern",
    "check_topic",
    "topic_matches",
]
