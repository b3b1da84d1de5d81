"""Topic names and the patterns that subscribe to them.

Topics are dotted lowercase names (``sensor.bin.fill``). Patterns use the MQTT/AMQP wildcards:
``*`` matches exactly one segment and ``#``, allowed only as the last segment, matches whatever
is left, including nothing (``sensor.#`` matches ``sensor`` and ``sensor.bin.fill``).
"""

from __future__ import annotations

import re
from functools import lru_cache

from kernos.kernel.errors import InvalidInput

TOPIC_MAX = 128
"""Longest topic (and pattern) accepted, in characters."""

_TOPIC = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
_SEGMENT = re.compile(r"^([a-z0-9_]+|\*|#)$")


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is a valid dotted topic name, else raise ``InvalidInput``."""
    if not isinstance(topic, str) or not _valid_topic(topic):
        raise InvalidInput(
            f"event topic {topic!r} is invalid: use dot-separated segments of lowercase "
            f"letters, digits and '_' (like 'sensor.bin.fill'), at most {TOPIC_MAX} characters"
        )
    return topic


@lru_cache(maxsize=4096)  # topics repeat: every bin publishes on the same few
def _valid_topic(topic: str) -> bool:
    return len(topic) <= TOPIC_MAX and _TOPIC.match(topic) is not None


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid topic pattern, else raise ``InvalidInput``."""
    _segments(pattern)
    return pattern


@lru_cache(maxsize=1024)
def _segments(pattern: str) -> tuple[str, ...]:
    if not isinstance(pattern, str) or not pattern or len(pattern) > TOPIC_MAX:
        raise InvalidInput(f"topic pattern {pattern!r} is empty or too long")
    parts = tuple(pattern.split("."))
    for index, part in enumerate(parts):
        if not _SEGMENT.match(part):
            raise InvalidInput(
                f"topic pattern {pattern!r} is invalid: each segment is a name, '*' (one "
                "segment) or '#' (the rest)"
            )
        if part == "#" and index != len(parts) - 1:
            raise InvalidInput(f"topic pattern {pattern!r} is invalid: '#' must come last")
    return parts


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` matches ``pattern`` (``*`` one segment, ``#`` the rest, maybe none)."""
    parts = _segments(pattern)
    segments = topic.split(".")
    for index, part in enumerate(parts):
        if part == "#":
            return True
        if index >= len(segments) or (part != "*" and part != segments[index]):
            return False
    return len(parts) == len(segments)


KERNEL_PREFIXES = ("process.", "approval.")
"""Topics and event ids the kernel publishes itself (``process.finished``,
``approval.requested``): nobody else may publish under them, or a tenant could pre-empt (and
so suppress) or forge a run's webhook or a human-in-the-loop notification."""


def check_not_reserved(topic: str, event_id: str | None) -> None:
    """Raise ``InvalidInput`` for an outside publisher's event on a kernel topic or id."""
    if topic.startswith(KERNEL_PREFIXES) or (event_id or "").startswith(KERNEL_PREFIXES):
        raise InvalidInput(
            f"topics and event ids starting with {' or '.join(KERNEL_PREFIXES)} are the "
            "kernel's own; "
            "publish under another name"
        )
