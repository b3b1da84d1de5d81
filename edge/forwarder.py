"""Forwards buffered events to a kernel's ``POST /v1/events``, in order, exactly once.

The forwarder reads the oldest events from the :class:`~kernos.edge.buffer.ForwardBuffer`,
posts them as one batch with the edge's own API key (``Authorization: Bearer``), and acks them
in the buffer only after a 2xx answer. Each event carries the deterministic id it was buffered
with, so a batch resent after a lost answer is de-duplicated by the kernel (idempotent per
event id): every event is recorded once, and in buffer order.

While the kernel is unreachable (connection refused or reset, timeout, 5xx) it waits with
exponential backoff and jitter and tries again; on 429 it waits at least ``Retry-After``. On
413 it halves the batch. Any other 4xx is about the content: the batch is split in halves
until the one event the kernel refuses is found; that *poison* event moves to the
dead-letter store (another buffer file) with the kernel's reason, is acked, and the rest go
on — one bad event neither blocks the queue nor disappears. 401 and 403 mean the key is wrong
or lacks the right to publish: :class:`ForwardRefused` stops the forwarder, and the events
stay buffered until it runs again with a working key.

HTTP goes through the standard library (``urllib``): nothing to install on a small device.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from typing import Any

from kernos.edge.buffer import BufferedEvent, ForwardBuffer

__all__ = ["ForwardRefused", "Forwarder", "ForwarderStats", "KernelUnavailable"]

log = logging.getLogger(__name__)

BACKLOG_HEADER = "Kernos-Edge-Backlog"
"""Events waiting in this edge's buffer when a batch is sent (the batch included)."""
NODE_HEADER = "Kernos-Edge-Node"
"""The edge agent's name (``--name``)."""

_PROBLEM_MAX = 500


class KernelUnavailable(Exception):
    """The kernel did not take the batch, for a reason that passes: try again later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ForwardRefused(Exception):
    """The kernel refuses this edge agent (401/403): retrying will not help."""


@dataclass(slots=True)
class ForwarderStats:
    """What the forwarder did so far."""

    posts: int = 0
    """HTTP requests sent."""
    acked: int = 0
    """Events the kernel accepted (and the buffer dropped)."""
    dead_lettered: int = 0
    """Poison events moved to the dead-letter store."""
    rejected: int = 0
    """Events the kernel took but refused by their topic's schema (``rejected`` in its 202
    answer): it keeps them in its own dead-letter queue, with the reason."""
    failures: int = 0
    """Attempts that failed and were retried after a backoff."""
    last_error: str | None = None
    errors: list[str] = field(default_factory=list)
    """The reasons of the dead-lettered events (the first 100)."""


class Forwarder:
    """Moves events from ``buffer`` to the kernel at ``kernel_url``.

    ``dead_letters`` keeps poison events (payload ``{"event": ..., "status": ..., "error":
    ...}``). Meant for one thread: :meth:`run` in a worker, :meth:`stop` from anywhere.
    """

    def __init__(
        self,
        buffer: ForwardBuffer,
        kernel_url: str,
        *,
        key: str,
        dead_letters: ForwardBuffer,
        batch_size: int = 500,
        timeout_s: float = 10.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        rng: random.Random | None = None,
        node: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not kernel_url.startswith(("http://", "https://")):
            raise ValueError(f"the kernel URL must start with http:// or https://: {kernel_url}")
        self.buffer = buffer
        self.dead_letters = dead_letters
        self.url = kernel_url.rstrip("/") + "/v1/events"
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stats = ForwarderStats()
        self._key = key
        self.node = node
        """This edge agent's name, sent with each batch (the kernel's backlog gauge)."""
        self._rng = rng or random.Random()  # noqa: S311 - retry jitter, not security
        self._stop = threading.Event()
        self._failures_in_row = 0

    # -- the loop --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return at its next wait (events stay buffered)."""
        self._stop.set()

    def run(self, *, until_empty: Callable[[], bool] | None = None, idle_s: float = 0.2) -> None:
        """Forward until :meth:`stop` is called, or, with ``until_empty``, until it returns
        true *and* the buffer is empty. Raises :class:`ForwardRefused`."""
        while not self._stop.is_set():
            try:
                sent = self.send_batch()
            except KernelUnavailable as exc:
                self._stop.wait(self._backoff(exc.retry_after))
                continue
            if sent:
                continue
            if until_empty is not None and until_empty() and len(self.buffer) == 0:
                return
            self._stop.wait(idle_s)

    def send_batch(self) -> int:
        """Forward the oldest batch once; return how many events left the buffer (acked or
        dead-lettered). Raises :class:`KernelUnavailable` and :class:`ForwardRefused`."""
        events = self.buffer.peek(self.batch_size)
        if not events:
            return 0
        done = self._send(events)
        self._failures_in_row = 0
        return done

    # -- one batch -------------------------------------------------------------------------

    def _send(self, events: list[BufferedEvent]) -> int:
        status, detail, retry_after = self._post(events)
        if 200 <= status < 300:
            self.buffer.ack(events[-1].seq)
            self.stats.acked += len(events)
            self.stats.rejected += _rejected_count(detail)
            return len(events)
        if status in (401, 403):
            raise ForwardRefused(f"the kernel refused this edge agent's key ({status}): {detail}")
        if status == 429 or status >= 500 or status == 408:
            raise KernelUnavailable(f"kernel answered {status}: {detail}", retry_after=retry_after)
        if len(events) > 1:
            # Something in the batch is refused (or it is too large): find out what, in order.
            middle = len(events) // 2
            if status == 413:
                self.batch_size = max(1, middle)
            return self._send(events[:middle]) + self._send(events[middle:])
        self._bury(events[0], status, detail)
        return 1

    def _bury(self, event: BufferedEvent, status: int, detail: str) -> None:
        """Move a poison event to the dead-letter store, then ack it."""
        reason = f"{status}: {detail}"
        self.dead_letters.append(
            event.topic,
            {
                "event": {"id": event.event_id, "topic": event.topic, "data": event.payload},
                "status": status,
                "error": reason,
            },
            event_id=event.event_id,
        )
        self.buffer.ack(event.seq)
        self.stats.dead_lettered += 1
        if len(self.stats.errors) < 100:
            self.stats.errors.append(reason)
        log.warning("event %s dead-lettered: %s", event.event_id, reason)

    def _post(self, events: list[BufferedEvent]) -> tuple[int, str, float | None]:
        """POST one batch; ``(status, detail or 2xx body, retry_after)``; raises
        KernelUnavailable when no HTTP answer came back at all."""
        body = json.dumps(
            {"events": [_wire(e) for e in events]}, separators=(",", ":"), allow_nan=False
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url,
            data=body,
            method="POST",
            headers=self._headers(),
        )
        self.stats.posts += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                text = response.read().decode("utf-8", "replace")
                return int(response.status), text, None
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read().decode("utf-8", "replace")
            return exc.code, _problem_detail(text), _retry_after(exc.headers.get("Retry-After"))
        except (urllib.error.URLError, OSError, HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise KernelUnavailable(f"kernel unreachable: {reason}") from exc

    def _headers(self) -> dict[str, str]:
        """The batch's headers: the key, a W3C ``traceparent`` starting a trace for the batch
        (the kernel's spans for it join that trace), and this edge's backlog."""
        headers = {
            "Authorization": f"Bearer {self._key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
            BACKLOG_HEADER: str(len(self.buffer)),
        }
        if self.node:
            headers[NODE_HEADER] = self.node
        return headers

    def _backoff(self, retry_after: float | None) -> float:
        """Seconds to wait after a failure: exponential, capped, half of it jitter."""
        self._failures_in_row += 1
        self.stats.failures += 1
        delay = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (self._failures_in_row - 1))
        delay = delay / 2 + self._rng.uniform(0, delay / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s * 10))
        return delay


def _wire(event: BufferedEvent) -> dict[str, Any]:
    wire: dict[str, Any] = {"topic": event.topic, "data": event.payload}
    if event.event_id is not None:
        wire["id"] = event.event_id
    return wire


def _rejected_count(text: str) -> int:
    """How many events a 2xx answer of ``POST /v1/events`` lists as ``rejected``."""
    try:
        body = json.loads(text)
    except ValueError:
        return 0
    rejected = body.get("rejected") if isinstance(body, dict) else None
    return len(rejected) if isinstance(rejected, list) else 0


def _problem_detail(text: str) -> str:
    """The ``detail`` of a problem JSON body (or the body itself), cut short."""
    try:
        body = json.loads(text)
    except ValueError:
        return text[:_PROBLEM_MAX]
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
        errors = body.get("errors")
        if errors:
            detail = f"{detail} {json.dumps(errors)[:_PROBLEM_MAX]}"
        if detail:
            return str(detail)[:_PROBLEM_MAX]
    return text[:_PROBLEM_MAX]


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), ``None`` if absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
