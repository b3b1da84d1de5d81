"""The records of the event bus: events, triggers, dead letters, and the callback shapes."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from kernos.kernel.errors import InvalidInput
from kernos.kernel.events.topics import check_pattern, check_topic
from kernos.kernel.identity import Principal, check_name

if TYPE_CHECKING:
    from kernos.kernel.processes import ProcessInfo

_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_known_tenants: set[str] = set()  # names already checked: events repeat a few tenants


def _valid_id(value: str) -> bool:
    """1-64 printable ASCII characters, no spaces (``[\\x21-\\x7e]{1,64}``, without a regex)."""
    return 0 < len(value) <= 64 and value.isascii() and value.isprintable() and " " not in value


_SCALARS = (str, int, bool, type(None))


def _flat_json(data: dict[str, Any]) -> bool:
    """Whether ``data`` is certainly JSON without encoding it: string keys and scalar values
    (finite floats). Sensor readings are; anything else takes the full check."""
    for key, value in data.items():
        if type(key) is not str:
            return False
        if type(value) is float:
            if not math.isfinite(value):
                return False
        elif type(value) not in _SCALARS:
            return False
    return True


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened, published on a topic within one tenant.

    ``id`` is the idempotency key: publishing an event whose id the tenant already has is a
    no-op that returns the stored event, and handlers receive the same id on every redelivery
    (use it to deduplicate their effects). Leave it out to get a fresh uuid4. ``time`` is set
    from the kernel clock when the event is published, unless the publisher supplies one.
    """

    topic: str
    tenant: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=_new_id)
    time: datetime | None = None
    correlation_id: str | None = None
    traceparent: str | None = None
    """The W3C trace context it was published in (``00-<trace>-<span>-<flags>``): set by the
    bus from the publisher's current span when not given."""

    def __post_init__(self) -> None:
        check_topic(self.topic)
        if self.tenant not in _known_tenants:
            check_name(self.tenant, what="tenant")
            if len(_known_tenants) < 10_000:
                _known_tenants.add(self.tenant)
        if not isinstance(self.id, str) or not _valid_id(self.id):
            raise InvalidInput(
                f"event id {self.id!r} is invalid: use 1-64 printable ASCII characters, no spaces"
            )
        if not isinstance(self.source, str) or not 0 < len(self.source) <= 127:
            raise InvalidInput("event source must be a principal subject or plugin name")
        if self.correlation_id is not None and not 0 < len(self.correlation_id) <= 64:
            raise InvalidInput("event correlation_id must be 1-64 characters")
        if self.time is not None and self.time.tzinfo is None:
            raise InvalidInput("event time must be timezone-aware")
        if self.traceparent is not None and not _TRACEPARENT.fullmatch(self.traceparent):
            raise InvalidInput("event traceparent must be a W3C traceparent (00-<32>-<16>-<2>)")
        if not isinstance(self.data, dict):
            raise InvalidInput(f"event data must be a JSON object, not {type(self.data).__name__}")
        if not _flat_json(self.data):
            try:
                json.dumps(self.data, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"event data is not JSON: {exc}") from None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what a trigger hands its agent by default)."""
        return {
            "id": self.id,
            "topic": self.topic,
            "tenant": self.tenant,
            "source": self.source,
            "data": self.data,
            "time": self.time.isoformat() if self.time else None,
            "correlation_id": self.correlation_id,
        }


class EventHandler(Protocol):
    """An in-process subscriber: called at least once per matching event.

    It must be idempotent, keyed by ``event.id``: a delivery that was interrupted (a crash, a
    timeout, a failure after a partial effect) is delivered again. Raising marks the attempt
    failed; it is retried with backoff and dead-lettered after the last attempt.
    """

    async def __call__(self, event: Event, /) -> None:
        """Handle ``event``."""


class Spawner(Protocol):
    """How the bus starts a trigger's agent (``kernel.processes.spawn``)."""

    async def __call__(
        self,
        agent: str,
        input: dict[str, Any] | None = None,
        *,
        principal: Principal,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> ProcessInfo:
        """Commit a new process for ``agent`` and start it (once per ``idempotency_key``)."""


InputMap = Callable[[Event], dict[str, Any]]
"""Builds a trigger's agent input from the event that fired it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Trigger:
    """When an event of ``tenant`` matches ``pattern``, spawn ``agent`` as ``principal``.

    The agent's input is ``{"event": event.as_dict()}`` unless ``input_map`` builds another;
    its correlation id is the event's (or the event id). Each trigger spawns at most one
    process per event, however often the event is published or redelivered.
    """

    name: str
    pattern: str
    agent: str
    tenant: str
    principal: Principal
    input_map: InputMap | None = None
    plugin: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, what="trigger")
        check_pattern(self.pattern)
        check_name(self.tenant, what="tenant")
        if self.principal.tenant != self.tenant:
            raise InvalidInput(
                f"trigger {self.name!r} acts in tenant {self.tenant!r}, so its principal must "
                f"belong to it (got {self.principal.subject!r})"
            )

    def input_for(self, event: Event) -> dict[str, Any]:
        """The agent input for ``event``."""
        if self.input_map is None:
            return {"event": event.as_dict()}
        return self.input_map(event)


REJECTED = "kernos.rejected"
"""The pseudo-subscriber of events refused by their topic's schema: each is stored with a
dead-lettered delivery to it, so operators find it, with its reason, in the dead-letter queue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EventSchema:
    """What events on ``topic`` must look like to be accepted.

    ``check(data)`` returns the problems of an event's ``data`` (empty when it is fine). A
    refused event is not dropped: it is stored and dead-lettered with the problems as its
    error, and nothing is delivered or triggered for it.
    """

    topic: str
    check: Callable[[dict[str, Any]], list[str]]
    description: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        check_topic(self.topic)

    def problems(self, data: dict[str, Any]) -> list[str]:
        """``check(data)``, with a failing check reported as a problem rather than raised."""
        try:
            return list(self.check(data))
        except Exception as exc:  # a plugin's bug refuses the event, never the whole batch
            return [f"the {self.topic} check failed: {type(exc).__name__}: {exc}"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A delivery that failed every attempt, as operators inspect it."""

    id: int
    event: Event
    subscriber: str
    attempts: int
    error: str | None
    created_at: datetime
    replayed_at: datetime | None = None
    replayed_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "event": self.event.as_dict(),
            "subscriber": self.subscriber,
            "attempts": self.attempts,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "replayed_at": self.replayed_at.isoformat() if self.replayed_at else None,
            "replayed_by": self.replayed_by,
        }
