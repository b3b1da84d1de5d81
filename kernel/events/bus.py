"""The event bus: durable publish, at-least-once delivery, triggers and the dead-letter queue.

``publish`` commits the event and one *pending* delivery row per matching subscriber or
trigger in one transaction (with its audit record), and only then dispatches. Each delivery
is driven by its own task: it commits the attempt (``attempts + 1``) before calling the
handler and marks the row delivered after it returns, so a crash anywhere in between leaves
a pending row that the next ``start`` delivers again. A failed attempt is retried after an
exponential backoff with jitter, slept on the kernel clock and recorded in the row
(``next_attempt_at``), so a restart keeps the schedule; after ``max_attempts`` started
attempts the row is *dead* and a dead letter keeps the last error for operators to inspect
and ``replay``. An attempt cut short by a stop counts, so an event that brings the kernel
down every time still ends in the dead-letter queue.

Triggers are subscribers that spawn an agent, once per (trigger, event): the delivery row
records the spawned pid, and every attempt spawns under the idempotency key
``trigger:{tenant}:{name}:{event id}``, so an attempt after one that committed its process but
stopped before recording the pid gets that same process back.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine, Iterable, Sequence
from contextvars import Token
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy.orm import Session

from kernos.kernel.clock import Clock
from kernos.kernel.errors import Conflict, InvalidInput
from kernos.kernel.events.records import (
    REJECTED,
    DeadLetter,
    Event,
    EventHandler,
    EventSchema,
    Spawner,
    Trigger,
)
from kernos.kernel.events.store import BUS_PRINCIPAL, Claim, EventStore
from kernos.kernel.events.topics import check_pattern, topic_matches
from kernos.kernel.identity import Principal, check_name
from kernos.kernel.storage.database import Database
from kernos.kernel.syscalls import AuditSink

log = logging.getLogger(__name__)

_ERROR_MAX = 2000


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, if one is recording a trace."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def _enter_trace(traceparent: str | None) -> Token[Context] | None:
    """Make ``traceparent`` the current (remote) parent; the token to detach, if any."""
    if not traceparent:
        return None
    extracted = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    return otel_context.attach(extracted)


@dataclass(frozen=True, slots=True)
class Published:
    """What ``publish_batch`` committed."""

    stored: list[Event]
    """Every event as stored (a known id yields the event stored first)."""
    rejected: dict[int, str]
    """Position in the batch → why its topic's schema refused it (stored, dead-lettered)."""


@dataclass(frozen=True, slots=True)
class _Subscription:
    key: str
    pattern: str
    tenant: str | None
    handler: EventHandler | None = None
    trigger: Trigger | None = None

    def matches(self, event: Event) -> bool:
        if self.tenant is not None and self.tenant != event.tenant:
            return False
        return topic_matches(self.pattern, event.topic)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described[:_ERROR_MAX]


class EventBus:
    """Topics, subscribers, triggers and the dead-letter queue of one kernel.

    Build it on the kernel's database, clock and audit sink; ``spawn`` (the process manager's
    ``spawn``) is needed only for triggers. Call ``start`` once storage is up to re-dispatch
    the deliveries a previous run left pending, and ``stop`` before storage closes.
    Retries wait ``backoff_base * 2**(attempt-1)`` seconds, capped at ``backoff_max``, of
    which a random half is jitter.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit_sink: AuditSink,
        *,
        spawn: Spawner | None = None,
        triggers: Iterable[Trigger] = (),
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise InvalidInput("max_attempts must be at least 1")
        if backoff_base <= 0 or backoff_max < backoff_base:
            raise InvalidInput("backoff needs 0 < backoff_base <= backoff_max")
        self._clock = clock
        self._store = EventStore(db, clock, audit_sink, max_attempts=max_attempts)
        self._spawn = spawn
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._rng = rng or random.Random()  # noqa: S311 - retry jitter, not security
        self._subs: dict[str, _Subscription] = {}
        self._schemas: dict[str, EventSchema] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()
        self._helpers: set[asyncio.Task[Any]] = set()
        self._started = False
        self._closing = False
        for trigger in triggers:
            self.add_trigger(trigger)

    @property
    def max_attempts(self) -> int:
        """Attempts a delivery gets before it is dead-lettered."""
        return self._store.max_attempts

    @property
    def audit_sink(self) -> AuditSink:
        """Where publish, dead-letter and replay records go."""
        return self._store.audit_sink

    @audit_sink.setter
    def audit_sink(self, sink: AuditSink) -> None:
        # The policy layer may install the hash-chained sink after the bus is built.
        self._store.audit_sink = sink

    # -- Subscribing ----------------------------------------------------------------------

    def subscribe(
        self, pattern: str, handler: EventHandler, *, name: str, tenant: str | None = None
    ) -> None:
        """Call ``handler(event)`` at least once for every event whose topic matches ``pattern``.

        ``name`` identifies the subscriber across restarts: deliveries left pending wait for a
        subscriber of that name. ``tenant`` limits it to one tenant's events. The handler
        must be idempotent, keyed by ``event.id``. Raises ``InvalidInput`` (bad name or
        pattern) and ``Conflict`` (name taken).
        """
        check_name(name, what="subscriber")
        check_pattern(pattern)
        if tenant is not None:
            check_name(tenant, what="tenant")
        self._add(_Subscription(f"handler:{name}", pattern, tenant, handler=handler))

    def add_trigger(self, trigger: Trigger) -> None:
        """Spawn ``trigger.agent`` for every matching event of its tenant, once per event.

        Raises ``Conflict`` (name taken) and ``InvalidInput`` (this bus cannot spawn).
        """
        if self._spawn is None:
            raise InvalidInput(
                f"cannot add trigger {trigger.name!r}: this event bus was built without a "
                "spawner (use the kernel's bus)"
            )
        key = f"trigger:{trigger.name}"
        self._add(_Subscription(key, trigger.pattern, trigger.tenant, trigger=trigger))

    def _add(self, sub: _Subscription) -> None:
        if sub.key in self._subs:
            kind, name = sub.key.split(":", 1)
            raise Conflict(f"a {kind} named {name!r} is already registered on the event bus")
        self._subs[sub.key] = sub
        if self._started and not self._closing:
            self._helper(self._redispatch(sub.key))

    @property
    def subscribers(self) -> list[str]:
        """Registered subscriber keys (``handler:NAME``, ``trigger:NAME``), sorted."""
        return sorted(self._subs)

    @property
    def triggers(self) -> list[Trigger]:
        """The registered triggers."""
        return [s.trigger for s in self._subs.values() if s.trigger is not None]

    # -- Lifecycle ------------------------------------------------------------------------

    async def start(self) -> int:
        """Re-dispatch every pending delivery of a registered subscriber; returns how many."""
        self._started = True
        return await self._redispatch(None)

    async def stop(self) -> None:
        """Cancel retry timers and running deliveries; unfinished ones stay pending."""
        self._closing = True
        tasks = [*self._tasks.values(), *self._helpers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._helpers.clear()

    async def drain(self) -> None:
        """Wait until no delivery is in flight (one waiting for its next retry is in flight)."""
        while self._tasks or self._helpers:
            await asyncio.wait([*self._tasks.values(), *self._helpers])

    def _helper(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    async def _redispatch(self, key: str | None) -> int:
        rows = await self._store.pending(key)
        known = [delivery_id for delivery_id, sub in rows if sub in self._subs]
        for delivery_id in known:
            self._schedule(delivery_id)
        if len(known) < len(rows):
            log.info(
                "%d pending event deliveries wait for subscribers that are not registered",
                len(rows) - len(known),
            )
        return len(known)

    # -- Publishing -----------------------------------------------------------------------

    async def publish(self, event: Event) -> Event:
        """Commit ``event`` and dispatch it; returns it as stored.

        Idempotent per (tenant, event id): an id the tenant already published returns the
        stored event and dispatches nothing. Raises ``NotFound`` for an unknown tenant.
        """
        return (await self.publish_many([event]))[0]

    async def publish_many(self, events: Sequence[Event]) -> list[Event]:
        """Publish events in one transaction (see ``publish``); returns them as stored.

        An event its topic's schema refuses is stored and dead-lettered (see ``add_schema``);
        ``publish_batch`` also says which ones were."""
        return (await self.publish_batch(events)).stored

    async def publish_batch(self, events: Sequence[Event]) -> Published:
        """``publish_many``, also returning the events refused by their topic's schema (by
        position in ``events``, with the reason): stored and dead-lettered, never delivered."""
        if not events:
            return Published(stored=[], rejected={})
        now = self._clock.now()
        plans, rejected = self._plans(events, now)
        refused: dict[int, str] = {}
        stored, new = await self._store.insert(
            plans, now, rejected=rejected, refused=refused, trace=current_traceparent()
        )
        for delivery_id in new:
            self._schedule(delivery_id)
        return Published(stored=stored, rejected=refused)

    def publish_in(self, session: Session, events: Sequence[Event]) -> list[int]:
        """Stage ``events`` inside a writer job that is already open, so they commit with the
        job's other writes; returns the new deliveries' ids, to hand to ``dispatch`` once the
        job has committed (until then nothing delivers them; after a crash, ``start`` does)."""
        now = self._clock.now()
        plans, rejected = self._plans(events, now)
        trace = current_traceparent()
        return self._store.insert_in(session, plans, now, rejected=rejected, trace=trace)[1]

    def add_schema(self, schema: EventSchema) -> None:
        """Check every event published on ``schema.topic`` from now on: one it refuses is
        stored with a dead letter naming the problems (subscriber ``kernos.rejected``) and
        reaches no subscriber or trigger. ``Conflict`` if the topic has a schema already."""
        if schema.topic in self._schemas:
            owner = self._schemas[schema.topic].plugin or "another plugin"
            raise Conflict(f"topic {schema.topic!r} already has a schema from {owner}")
        self._schemas[schema.topic] = schema

    def _plans(
        self, events: Sequence[Event], now: datetime
    ) -> tuple[list[tuple[Event, list[str]]], dict[int, str]]:
        stamped = [e if e.time is not None else replace(e, time=now) for e in events]
        rejected: dict[int, str] = {}  # by position: an id may come twice, differently
        plans: list[tuple[Event, list[str]]] = []
        schemas = self._schemas
        for position, e in enumerate(stamped):
            schema = schemas.get(e.topic) if schemas else None
            if schema is not None and (problems := schema.problems(e.data)):
                rejected[position] = "; ".join(problems)[:_ERROR_MAX]
                plans.append((e, [REJECTED]))
                continue
            plans.append((e, [s.key for s in self._subs.values() if s.matches(e)]))
        return plans, rejected

    def dispatch(self, delivery_ids: Iterable[int]) -> None:
        """Start delivering what ``publish_in`` staged, once its transaction has committed."""
        for delivery_id in delivery_ids:
            self._schedule(delivery_id)

    # -- Delivering -----------------------------------------------------------------------

    def _schedule(self, delivery_id: int) -> None:
        if self._closing:
            return
        if delivery_id in self._tasks:
            # Its task may be past its last look at the row: run it once more afterwards.
            self._again.add(delivery_id)
            return
        self._tasks[delivery_id] = asyncio.create_task(
            self._deliver(delivery_id), name=f"kernos-event-delivery-{delivery_id}"
        )

    async def _deliver(self, delivery_id: int) -> None:
        try:
            while await self._attempt(delivery_id):
                pass
        except asyncio.CancelledError:
            raise
        except Exception:
            # Storage trouble: the row stays pending and the next start delivers it.
            log.exception("event delivery %s stopped", delivery_id)
        finally:
            self._tasks.pop(delivery_id, None)
            if delivery_id in self._again:
                self._again.discard(delivery_id)
                self._schedule(delivery_id)

    async def _attempt(self, delivery_id: int) -> bool:
        """Run one attempt once it is due; returns whether a retry follows."""
        due = await self._store.due(delivery_id)
        if due is None:
            return False
        sub = self._subs.get(due.subscriber)
        if sub is None:
            return False  # it waits for its subscriber to register
        await self._clock.sleep_until(due.next_attempt_at)
        claim = await self._store.claim(delivery_id)
        if claim is None:
            return False
        try:
            pid = await self._call(sub, claim)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = _describe(exc)
            extra = {
                "event_id": claim.event.id,
                "tenant": claim.event.tenant,
                "subscriber": claim.subscriber,
            }
            retry_at = self._clock.now() + timedelta(seconds=self._backoff(claim.attempt))
            again = await self._store.fail(claim, error, retry_at=retry_at)
            if again:
                log.warning(
                    "event delivery to %s failed (attempt %d of %d), will retry: %s",
                    claim.subscriber,
                    claim.attempt,
                    self.max_attempts,
                    error,
                    extra=extra,
                )
            else:
                log.error(
                    "event delivery to %s dead-lettered after %d attempts: %s",
                    claim.subscriber,
                    claim.attempt,
                    error,
                    extra=extra,
                )
            return again
        await self._store.succeed(claim, pid=pid)
        return False

    async def _call(self, sub: _Subscription, claim: Claim) -> int | None:
        """Deliver to a handler, or spawn a trigger's agent; returns the pid spawned. Either
        runs in the trace the event was published in (a process it starts joins it)."""
        token = _enter_trace(claim.event.traceparent)
        try:
            return await self._deliver_to(sub, claim)
        finally:
            if token is not None:
                otel_context.detach(token)

    async def _deliver_to(self, sub: _Subscription, claim: Claim) -> int | None:
        if sub.handler is not None:
            await sub.handler(claim.event)
            return None
        trigger = sub.trigger
        assert trigger is not None and self._spawn is not None
        if claim.pid is not None:
            return claim.pid
        payload = trigger.input_for(claim.event)
        correlation = claim.event.correlation_id or claim.event.id
        # An earlier attempt may have committed its process and stopped before recording the
        # pid: the spawn key makes the process manager hand back that process instead.
        info = await self._spawn(
            trigger.agent,
            payload,
            principal=trigger.principal,
            correlation_id=correlation,
            idempotency_key=f"trigger:{trigger.tenant}:{trigger.name}:{claim.event.id}",
        )
        return info.pid

    def _backoff(self, attempt: int) -> float:
        """Seconds before the attempt after ``attempt``: exponential, capped, equal jitter."""
        delay = min(self._backoff_max, self._backoff_base * 2.0 ** (attempt - 1))
        return delay / 2 + self._rng.uniform(0, delay / 2)

    # -- Dead-letter queue ----------------------------------------------------------------

    async def published(
        self, *, tenant: str, after: int | None = None, topic: str | None = None, limit: int = 100
    ) -> list[tuple[int, Event]]:
        """``(seq, event)`` of a tenant's published events, oldest first: the newest ``limit``
        of them, or (with ``after``, a ``seq``) the first ``limit`` after it, which is how a
        live view follows the stream. ``topic`` is a topic or a prefix ending in ``*``."""
        return await self._store.published(tenant=tenant, after=after, topic=topic, limit=limit)

    async def dead_letters(
        self, *, tenant: str | None = None, limit: int = 100, include_replayed: bool = False
    ) -> list[DeadLetter]:
        """Dead letters, newest first; only those not yet replayed unless ``include_replayed``.

        ``tenant`` limits them to one tenant's. Raises ``InvalidInput`` for a limit outside
        1-1000.
        """
        return await self._store.dead_letters(
            tenant=tenant, limit=limit, include_replayed=include_replayed
        )

    async def replay(
        self, dead_letter_id: int, *, tenant: str | None = None, by: Principal | None = None
    ) -> DeadLetter:
        """Deliver a dead letter again, as a fresh pending delivery with all its attempts.

        ``tenant`` (the caller's) hides other tenants' dead letters; ``by`` is who the audit
        record names (the kernel if ``None``). Raises ``NotFound`` and ``Conflict`` (already
        replayed). A delivery whose subscriber is not registered waits for it.
        """
        who = by.subject if by is not None else BUS_PRINCIPAL
        replayed, delivery_id = await self._store.replay(dead_letter_id, tenant=tenant, by=who)
        if replayed.subscriber in self._subs:
            self._schedule(delivery_id)
        return replayed
