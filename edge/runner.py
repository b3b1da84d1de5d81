"""The edge agent's main loop: source → filter → durable buffer → forwarder → kernel.

:func:`run_edge` reads a source, filters each chunk of readings, appends what is worth
forwarding to the store-and-forward buffer (one transaction per chunk, each event with a
deterministic id ``{node}-{bin}-{ts in ms}``), and runs the :class:`Forwarder` on a thread
that drains the buffer to the kernel meanwhile. Malformed readings given as mappings go to the
dead-letter store (``<buffer>.dead``) with their reason. Malformed *messages* (a
:class:`MessageChunk` from ``--source mqtt``) are forwarded to the kernel as they came, with
a deterministic id: its ``sensor.bin.fill`` schema refuses them into its dead-letter queue
with the reason, where operators see them (``kernos events dlq``); the report counts them by
kind, and counts what the kernel refused. When the source ends it waits up to
``drain_timeout_s`` for the buffer to empty; whatever is left stays buffered for the next
run, which sends it first.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernos.edge.buffer import ForwardBuffer, PendingEvent
from kernos.edge.errors import EdgeConfigError
from kernos.edge.filter import EdgeFilter, Forward
from kernos.edge.forwarder import Forwarder, ForwardRefused
from kernos.edge.sim import TOPIC
from kernos.edge.sources import MessageChunk, ReadingColumns

__all__ = ["RunReport", "dead_letter_path", "event_id", "run_edge"]

log = logging.getLogger(__name__)

_NODE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def event_id(node: str, forward: Forward) -> str:
    """The deterministic id of a forwarded reading: the same reading always gets the same
    id, so the kernel records it once however often it is sent."""
    return f"{node}-{forward.bin}-{round(forward.ts * 1000)}"


def dead_letter_path(buffer_path: Path) -> Path:
    """Where the dead-letter store of the buffer at ``buffer_path`` lives."""
    return buffer_path.with_name(buffer_path.name + ".dead")


@dataclass(frozen=True, kw_only=True, slots=True)
class RunReport:
    """What one run did."""

    raw: int
    dropped: dict[str, int]
    forwarded: int
    """Readings the filter chose to forward (all were buffered)."""
    acked: int
    """Events the kernel accepted during this run (earlier runs' leftovers included)."""
    dead_lettered: int
    """Events in the dead-letter store from this run: malformed readings and poison events."""
    malformed: dict[str, int]
    """Malformed messages forwarded for the kernel to dead-letter, by kind (``not_json``,
    ``not_object``, ``invalid``)."""
    rejected: int
    """Events the kernel refused (its schema) and keeps in its dead-letter queue."""
    left_in_buffer: int
    """Events still buffered at the end (the kernel was unreachable too long)."""
    failures: int
    """Forwarding attempts that failed and were retried."""
    hazard: str
    """The hazard classifier (``rule`` or ``onnx:<file>``)."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "raw": self.raw,
            "dropped": self.dropped,
            "forwarded": self.forwarded,
            "acked": self.acked,
            "dead_lettered": self.dead_lettered,
            "malformed": self.malformed,
            "rejected": self.rejected,
            "left_in_buffer": self.left_in_buffer,
            "failures": self.failures,
            "hazard": self.hazard,
        }

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        dropped = ",".join(f"{k}:{v}" for k, v in sorted(self.dropped.items())) or "none"
        malformed = ""
        if self.malformed:
            kinds = ",".join(f"{k}:{v}" for k, v in sorted(self.malformed.items()))
            malformed = f"malformed={sum(self.malformed.values())} ({kinds}) "
        return (
            f"raw={self.raw} dropped={sum(self.dropped.values())} ({dropped}) {malformed}"
            f"forwarded={self.forwarded} acked={self.acked} rejected={self.rejected} "
            f"dead_lettered={self.dead_lettered} buffered={self.left_in_buffer} "
            f"retries={self.failures} hazard={self.hazard}"
        )


def run_edge(
    source: Iterable[ReadingColumns | MessageChunk | Iterable[Mapping[str, Any]]],
    edge_filter: EdgeFilter,
    *,
    kernel_url: str,
    key: str,
    buffer_path: Path,
    node: str,
    drain_timeout_s: float = 60.0,
    batch_size: int = 500,
    backoff_max_s: float = 30.0,
) -> RunReport:
    """Run the edge agent over ``source`` (chunks of readings: column-wise, as mappings, or
    MQTT messages).

    Raises :class:`ForwardRefused` when the kernel refuses the key (the events stay
    buffered) and :class:`EdgeConfigError` for a bad ``node`` name.
    """
    if not _NODE.fullmatch(node):
        raise EdgeConfigError(
            f"node name {node!r} must be 1-32 letters, digits, '_', '.' or '-' (it goes into "
            "every event id)"
        )
    with (
        ForwardBuffer(buffer_path) as buffer,
        ForwardBuffer(dead_letter_path(buffer_path)) as dead,
    ):
        forwarder = Forwarder(
            buffer,
            kernel_url,
            key=key,
            dead_letters=dead,
            batch_size=batch_size,
            backoff_max_s=backoff_max_s,
            node=node,
        )
        source_done = threading.Event()
        failure: list[BaseException] = []

        def forward() -> None:
            try:
                forwarder.run(until_empty=source_done.is_set)
            except BaseException as exc:  # reported on the main thread
                failure.append(exc)

        thread = threading.Thread(target=forward, name="kernos-edge-forwarder", daemon=True)
        thread.start()
        malformed = 0
        kinds: Counter[str] = Counter()
        try:
            for chunk in source:
                if failure:
                    break
                refused: list[PendingEvent] = []
                if isinstance(chunk, ReadingColumns):
                    forwards = edge_filter.process_columns(
                        chunk.bins, chunk.ts, chunk.level, chunk.temp_c, chunk.voc_ppm
                    )
                elif isinstance(chunk, MessageChunk):
                    forwards = edge_filter.process(chunk.readings).forwards
                    for bad in chunk.malformed:
                        refused.append(
                            PendingEvent(topic=TOPIC, payload=bad.payload, event_id=bad.event_id)
                        )
                        kinds[bad.kind] += 1
                else:
                    output = edge_filter.process(chunk)
                    forwards = output.forwards
                    for rejected in output.rejected:
                        dead.append(
                            TOPIC,
                            {"reading": _jsonable(rejected.reading), "error": rejected.reason},
                        )
                        malformed += 1
                if forwards or refused:
                    # One transaction: the chunk is buffered whole before the source acks it.
                    buffer.append_many(
                        refused
                        + [
                            PendingEvent(
                                topic=TOPIC, payload=f.payload(), event_id=event_id(node, f)
                            )
                            for f in forwards
                        ]
                    )
        finally:
            source_done.set()
            thread.join(drain_timeout_s)
            if thread.is_alive():
                log.warning(
                    "buffer not drained within %.0f s; events stay buffered", drain_timeout_s
                )
                forwarder.stop()
                thread.join()
        if failure:
            error = failure[0]
            if isinstance(error, ForwardRefused):
                raise error
            raise RuntimeError(f"the forwarder stopped: {error}") from error
        stats = edge_filter.stats
        return RunReport(
            raw=stats.raw,
            dropped=dict(stats.dropped),
            forwarded=stats.forwarded,
            acked=forwarder.stats.acked,
            dead_lettered=forwarder.stats.dead_lettered + malformed,
            malformed=dict(kinds),
            rejected=forwarder.stats.rejected,
            left_in_buffer=len(buffer),
            failures=forwarder.stats.failures,
            hazard=edge_filter.hazard.name,
        )


def _jsonable(value: Any) -> Any:
    """``value`` if the buffer can store it as JSON, else its ``repr``."""
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)
