"""How the console shows the kernel's records: ages, short ids, process rows, sort keys.

Plain functions of JSON records (as the API returns them), so every screen shows a field the
same way and tests can check the text without a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Now = Callable[[], datetime]
"""Where the console reads the time (injected, so screenshots do not change by the second)."""


def system_now() -> datetime:
    """The real time, in UTC."""
    return datetime.now(UTC)


def parse_time(value: str | None) -> datetime | None:
    """An ISO timestamp as an aware datetime (UTC when the text has no zone)."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def age(value: str | None, now: datetime) -> str:
    """How long ago ``value`` was, briefly: ``42s``, ``5m``, ``3h``, ``2d``; ``-`` if unknown."""
    moment = parse_time(value)
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def clock_time(value: str | None) -> str:
    """``HH:MM:SS`` (UTC) of an ISO timestamp; ``-`` if unknown."""
    moment = parse_time(value)
    return "-" if moment is None else moment.astimezone(UTC).strftime("%H:%M:%S")


def short_id(value: str, width: int = 8) -> str:
    """The first ``width`` characters of an id (approval ids are UUIDs; a prefix is enough)."""
    return value[:width]


def state_text(process: dict[str, Any]) -> str:
    """``waiting(human)`` for a waiting process, the plain state otherwise."""
    state = str(process.get("state", "?"))
    waiting_on = process.get("waiting_on")
    return f"{state}({waiting_on})" if state == "waiting" and waiting_on else state


def tokens(process: dict[str, Any]) -> int:
    """Input plus output tokens a process has used."""
    usage = process.get("usage") or {}
    return int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))


def cost(process: dict[str, Any]) -> float:
    """What a process has cost so far."""
    return float((process.get("usage") or {}).get("cost", 0.0))


PROCESS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("pid", "PID"),
    ("agent", "AGENT"),
    ("tenant", "TENANT"),
    ("state", "STATE"),
    ("priority", "PRI"),
    ("tokens", "TOKENS"),
    ("cost", "COST"),
    ("age", "AGE"),
)
"""The process table's columns: key, heading (``top``'s order of importance)."""


def process_cells(process: dict[str, Any], now: datetime) -> tuple[str, ...]:
    """One process as the table shows it, in ``PROCESS_COLUMNS`` order."""
    return (
        str(process["pid"]),
        str(process.get("agent", "")),
        str(process.get("tenant", "")),
        state_text(process),
        str(process.get("priority", "")),
        str(tokens(process)),
        f"{cost(process):.4f}",
        age(process.get("created_at"), now),
    )


def process_sort_key(column: str) -> Callable[[dict[str, Any]], Any]:
    """Sort key of a ``PROCESS_COLUMNS`` key (numbers as numbers, age as creation time)."""
    keys: dict[str, Callable[[dict[str, Any]], Any]] = {
        "pid": lambda p: int(p["pid"]),
        "agent": lambda p: str(p.get("agent", "")),
        "tenant": lambda p: str(p.get("tenant", "")),
        "state": state_text,
        "priority": lambda p: int(p.get("priority") or 0),
        "tokens": tokens,
        "cost": cost,
        # Oldest first when ascending, like `ps`' ordering by start time reversed.
        "age": lambda p: str(p.get("created_at") or ""),
    }
    return keys[column]


def matches(process: dict[str, Any], text: str) -> bool:
    """Whether a process matches a filter: every word appears in one of its shown fields."""
    haystack = " ".join(
        [
            str(process.get("pid", "")),
            str(process.get("agent", "")),
            str(process.get("tenant", "")),
            str(process.get("owner", "")),
            state_text(process),
        ]
    ).lower()
    return all(word in haystack for word in text.lower().split())
