"""What the commands that talk to a running kernel share: the client, JSON options, ages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kernos.kernel.client import KernosClient
from kernos.kernel.errors import InvalidInput
from kernos.kernel.settings import load_settings


def connect() -> KernosClient:
    """A client of the kernel KERNOS_HOME and KERNOS_API_HOST/PORT describe."""
    return KernosClient.from_settings(load_settings())


def parse_json_option(text: str, *, option: str, want_object: bool = False) -> Any:
    """``text`` parsed as JSON; ``InvalidInput`` (exit 2) naming ``option`` if it isn't."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{option} is not valid JSON ({exc.msg} at column {exc.colno}); "
            f"""quote it for the shell, for example {option} '{{"name": "Ada"}}'"""
        ) from None
    if want_object and not isinstance(value, dict):
        raise InvalidInput(f"{option} must be a JSON object, got {type(value).__name__}")
    return value


def age(timestamp: str | None, *, now: datetime | None = None) -> str:
    """How long ago an ISO timestamp was, briefly: ``42s``, ``5m``, ``3h``, ``2d``."""
    if not timestamp:
        return "-"
    then = datetime.fromisoformat(timestamp)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
