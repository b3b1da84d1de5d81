"""The durable side of the event bus: events, delivery rows and dead letters in SQL.

Every method is one read or one write through the kernel's single writer; each write job
touches only its session (the writer may run it twice before it commits) and writes its audit
record in the same transaction. The state machine of a delivery row::

    pending ──attempt succeeds──► delivered
       │  ▲
       │  └─ attempt fails, attempts left: next_attempt_at = now + backoff
       └──── attempts used up ──► dead (+ a dead letter) ──replay──► pending (attempts = 0)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from kernos.kernel.clock import Clock
from kernos.kernel.errors import Conflict, InvalidInput, NotFound
from kernos.kernel.events.records import REJECTED, DeadLetter, Event
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import (
    DeadLetterRow,
    EventDeliveryRow,
    EventRow,
    TenantRow,
)
from kernos.kernel.syscalls import AuditRecord, AuditSink

BUS_PRINCIPAL = "kernel"
"""The principal audit records name when the bus itself acts (dead-lettering)."""


_CHUNK = 500
_AUDIT_TOPICS = 20  # topics named in a batch's audit record; the rest are in the events
_ERROR_MAX_REFUSED = 2000  # characters of a refusal reported back
_AUDIT_REJECTED = 20  # refused events named (with their reasons) in a batch's audit record
"""Event ids per ``IN (...)`` look-up (well under SQLite's bound-parameter limit)."""


class DeliveryStatus(StrEnum):
    """Where a delivery row stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Due:
    """A pending delivery as its task sees it before an attempt."""

    subscriber: str
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """One started (committed) attempt of one delivery."""

    delivery_id: int
    event_seq: int
    subscriber: str
    attempt: int
    event: Event
    pid: int | None
    created_at: datetime


def _event(row: EventRow, tenant: str) -> Event:
    return Event(
        id=row.event_id,
        topic=row.topic,
        tenant=tenant,
        source=row.source,
        data=row.data,
        time=row.time,
        correlation_id=row.correlation_id,
        traceparent=row.traceparent,
    )


def _dead_letter(row: DeadLetterRow, event: Event) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        event=event,
        subscriber=row.subscriber,
        attempts=row.attempts,
        error=row.error,
        created_at=row.created_at,
        replayed_at=row.replayed_at,
        replayed_by=row.replayed_by,
    )


_DEAD_LETTERS = (
    select(DeadLetterRow, EventRow, TenantRow.name)
    .join(EventDeliveryRow, EventDeliveryRow.id == DeadLetterRow.delivery_id)
    .join(EventRow, EventRow.seq == EventDeliveryRow.event_seq)
    .join(TenantRow, TenantRow.id == DeadLetterRow.tenant_id)
)
"""Dead letters with their events and tenant names (statements are immutable: shared)."""


def _insert_ids(session: Session, key: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``key``'s table; return their new integer keys, in order.

    On SQLite the keys are assigned here, after the largest one: the single writer holds the
    write lock for the whole transaction (``BEGIN IMMEDIATE``), so nothing can take them
    meanwhile, and a plain ``executemany`` is many times faster than ``RETURNING`` in
    parameter order, which SQLAlchemy can only do on SQLite one row per statement. PostgreSQL
    returns them in order from batched multi-row inserts.
    """
    if session.get_bind().dialect.name == "sqlite":
        start = session.scalar(select(func.max(key))) or 0
        ids = list(range(start + 1, start + 1 + len(rows)))
        # Core, not the ORM's bulk path: it checks every row's keys against the mapper.
        session.execute(
            insert(key.table), [{key.key: i, **row} for i, row in zip(ids, rows, strict=True)]
        )
        return ids
    returning = insert(key.class_).returning(key, sort_by_parameter_order=True)
    return list(session.scalars(returning, rows).all())


_SQLITE_EVENT_INSERT = (
    "INSERT INTO events "
    "(seq, tenant_id, event_id, topic, source, data, time, correlation_id, traceparent) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's SQLite DateTime stores values


def _insert_events_sqlite(
    session: Session,
    fresh: list[tuple[Event, list[str], int]],
    now: datetime,
    trace: str | None,
) -> list[int]:
    """Insert new events through the driver, values already in SQLAlchemy's SQLite storage
    format (per-row bind processing cost more than the insert itself); seqs as
    ``_insert_ids`` assigns them."""
    start = session.scalar(select(func.max(EventRow.seq))) or 0
    times: dict[datetime, str] = {}
    rows = []
    for seq, (event, _, tenant_id) in enumerate(fresh, start + 1):
        moment = event.time or now
        stamp = times.get(moment)
        if stamp is None:
            stamp = times[moment] = moment.astimezone(UTC).strftime(_SQLITE_TIME)
        rows.append(
            (
                seq,
                tenant_id,
                event.id,
                event.topic,
                event.source,
                json.dumps(event.data),
                stamp,
                event.correlation_id,
                event.traceparent or trace,
            )
        )
    session.connection().exec_driver_sql(_SQLITE_EVENT_INSERT, rows)
    return list(range(start + 1, start + 1 + len(rows)))


def _published_records(fresh: list[tuple[Event, list[str], int]]) -> list[AuditRecord]:
    """The audit records of newly stored events: one per event published alone, one per
    tenant and source for a batch — naming its size, topics, first and last ids and the
    SHA-256 of all its ids (in order, newline-separated), so the tamper-evident log still
    pins every event without a hash-chain entry each."""
    if len(fresh) == 1:
        event, keys, _ = fresh[0]
        return [
            AuditRecord(
                event="event.published",
                tenant=event.tenant,
                principal=event.source,
                target=event.topic,
                args={"event_id": event.id, "subscribers": keys},
                correlation_id=event.correlation_id,
            )
        ]
    groups: dict[tuple[str, str], list[tuple[Event, list[str]]]] = {}
    for event, keys, _ in fresh:
        groups.setdefault((event.tenant, event.source), []).append((event, keys))
    records = []
    for (tenant, source), items in groups.items():
        topics = sorted({e.topic for e, _ in items})
        ids = "\n".join(e.id for e, _ in items)
        records.append(
            AuditRecord(
                event="event.published",
                tenant=tenant,
                principal=source,
                target=topics[0] if len(topics) == 1 else "*",
                args={
                    "events": len(items),
                    "first_id": items[0][0].id,
                    "last_id": items[-1][0].id,
                    "ids_sha256": hashlib.sha256(ids.encode()).hexdigest(),
                    "topics": topics[:_AUDIT_TOPICS],
                    "subscribers": sorted({k for _, keys in items for k in keys}),
                },
                summary=f"{len(items)} events",
            )
        )
    return records


class EventStore:
    """Events, deliveries and dead letters on one kernel database."""

    def __init__(
        self, db: Database, clock: Clock, audit_sink: AuditSink, *, max_attempts: int
    ) -> None:
        self._db = db
        self._clock = clock
        self.audit_sink = audit_sink
        self.max_attempts = max_attempts

    # -- Publishing -----------------------------------------------------------------------

    async def insert(
        self,
        plans: list[tuple[Event, list[str]]],
        now: datetime,
        *,
        rejected: dict[int, str] | None = None,
        refused: dict[int, str] | None = None,
        trace: str | None = None,
    ) -> tuple[list[Event], list[int]]:
        """Commit new events with a pending delivery per subscriber key, audited.

        Returns the events as stored (an id the tenant already has yields the stored event
        and no deliveries) and the ids of the new deliveries. ``NotFound`` for an unknown
        tenant.
        """
        return await self._db.write(
            lambda session: self.insert_in(
                session, plans, now, rejected=rejected, refused=refused, trace=trace
            )
        )

    def insert_in(
        self,
        session: Session,
        plans: list[tuple[Event, list[str]]],
        now: datetime,
        *,
        rejected: dict[int, str] | None = None,
        refused: dict[int, str] | None = None,
        trace: str | None = None,
    ) -> tuple[list[Event], list[int]]:
        """``insert`` inside a writer job that is already open, so events commit with the
        caller's other writes (a process's finish and its ``process.finished`` event).

        ``rejected`` (position in ``plans`` → reason) are events their topic's schema refused:
        planned with the one subscriber ``REJECTED``, their delivery is stored dead with a dead
        letter that keeps the reason, and it is not among the returned ids to dispatch. When
        ``refused`` is given, it receives, by position in ``plans``, every event that ends up
        refused: a fresh refused one, a repeat of it later in the batch, and an id the tenant
        had already published and the schema refused then (what is stored is that event, so
        a corrected one must come under a new id)."""
        names = {event.tenant for event, _ in plans}
        found = session.execute(
            select(TenantRow.name, TenantRow.id).where(TenantRow.name.in_(names))
        )
        tenant_ids = {name: tid for name, tid in found.all()}
        for name in names:
            if name not in tenant_ids:
                raise NotFound(f"tenant {name!r} does not exist")
        # One look-up per chunk of ids instead of one per event: a batch of 10,000 is a
        # few dozen statements, not 10,000 selects and flushes.
        wanted: dict[int, set[str]] = {}
        for event, _ in plans:
            wanted.setdefault(tenant_ids[event.tenant], set()).add(event.id)
        known: dict[tuple[int, str], EventRow] = {}
        for tenant_id, ids in wanted.items():
            ordered = sorted(ids)
            for start in range(0, len(ordered), _CHUNK):
                rows = session.scalars(
                    select(EventRow).where(
                        EventRow.tenant_id == tenant_id,
                        EventRow.event_id.in_(ordered[start : start + _CHUNK]),
                    )
                )
                known.update({(tenant_id, row.event_id): row for row in rows})
        stored: list[Event] = []
        fresh: list[tuple[Event, list[str], int]] = []
        first: dict[tuple[int, str], tuple[Event, str | None]] = {}  # a repeated id
        earlier = self._refused_before(session, known) if refused is not None else {}
        reasons: dict[tuple[str, str], str] = {}  # the fresh events refused, by (tenant, id)
        for position, (event, keys) in enumerate(plans):
            ref = (tenant_ids[event.tenant], event.id)
            why: str | None
            if ref in known:
                stored.append(_event(known[ref], event.tenant))
                why = earlier.get(known[ref].seq)
                if why is not None:
                    why = (
                        f"this id was refused before ({why}); send a corrected event under a new id"
                    )
                    why = why[:_ERROR_MAX_REFUSED]
            elif ref in first:
                stored.append(first[ref][0])
                why = first[ref][1]
            else:
                why = (rejected or {}).get(position)
                if why is not None:
                    reasons[(event.tenant, event.id)] = why
                first[ref] = (event, why)
                fresh.append((event, keys, ref[0]))
                stored.append(event)
            if why is not None and refused is not None:
                refused[position] = why
        if not fresh:
            return stored, []
        if session.get_bind().dialect.name == "sqlite":
            seqs = _insert_events_sqlite(session, fresh, now, trace)
        else:
            seqs = _insert_ids(
                session,
                EventRow.seq,
                [
                    {
                        "tenant_id": tenant_id,
                        "event_id": event.id,
                        "topic": event.topic,
                        "source": event.source,
                        "data": event.data,
                        "time": event.time or now,
                        "correlation_id": event.correlation_id,
                        "traceparent": event.traceparent or trace,
                    }
                    for event, _, tenant_id in fresh
                ],
            )
        deliveries = [
            {
                "event_seq": seq,
                "subscriber": key,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for seq, (_, keys, _) in zip(seqs, fresh, strict=True)
            for key in keys
        ]
        if reasons:  # deliveries are in the order of ``fresh`` and its keys
            pairs = ((event, key) for event, keys, _ in fresh for key in keys)
            for delivery, (event, key) in zip(deliveries, pairs, strict=True):
                dead = key == REJECTED  # every row gets the same columns: one executemany
                delivery["last_error"] = reasons[(event.tenant, event.id)] if dead else None
                if dead:
                    delivery["status"] = DeliveryStatus.DEAD.value
        new = _insert_ids(session, EventDeliveryRow.id, deliveries) if deliveries else []
        if reasons:
            new = self._dead_on_arrival(session, fresh, deliveries, new, reasons, now)
        for record in _published_records(fresh):
            self.audit_sink.append(session, record)
        return stored, new

    @staticmethod
    def _refused_before(session: Session, known: dict[tuple[int, str], EventRow]) -> dict[int, str]:
        """Seq → reason of the known events that were refused by their schema."""
        if not known:
            return {}
        seqs = sorted(row.seq for row in known.values())
        found: dict[int, str] = {}
        for start in range(0, len(seqs), _CHUNK):
            rows = session.execute(
                select(EventDeliveryRow.event_seq, EventDeliveryRow.last_error).where(
                    EventDeliveryRow.event_seq.in_(seqs[start : start + _CHUNK]),
                    EventDeliveryRow.subscriber == REJECTED,
                )
            )
            found.update({seq: error or "refused" for seq, error in rows.all()})
        return found

    def _dead_on_arrival(
        self,
        session: Session,
        fresh: list[tuple[Event, list[str], int]],
        deliveries: list[dict[str, Any]],
        ids: list[int],
        rejected: dict[tuple[str, str], str],
        now: datetime,
    ) -> list[int]:
        """Dead letters for the refused events' deliveries (with one audit record per tenant);
        the ids of the other deliveries, to dispatch."""
        letters: list[dict[str, Any]] = []
        refused: dict[str, list[tuple[Event, str]]] = {}
        position = 0
        keep: list[int] = []
        for event, keys, tenant_id in fresh:
            for key in keys:
                delivery_id = ids[position]
                position += 1
                if key != REJECTED:
                    keep.append(delivery_id)
                    continue
                reason = rejected[(event.tenant, event.id)]
                letters.append(
                    {
                        "delivery_id": delivery_id,
                        "tenant_id": tenant_id,
                        "subscriber": REJECTED,
                        "attempts": 0,
                        "error": reason,
                        "created_at": now,
                    }
                )
                refused.setdefault(event.tenant, []).append((event, reason))
        if letters:
            session.execute(insert(DeadLetterRow), letters)
        for tenant, items in refused.items():
            self.audit_sink.append(
                session,
                AuditRecord(
                    event="event.rejected",
                    tenant=tenant,
                    principal=items[0][0].source,
                    target=items[0][0].topic,
                    args={
                        "events": len(items),
                        "ids": [e.id for e, _ in items[:_AUDIT_REJECTED]],
                        "reasons": [r for _, r in items[:_AUDIT_REJECTED]],
                    },
                    summary=f"{len(items)} events refused by their topic's schema",
                    decision="deny",
                ),
            )
        return keep

    # -- Delivering -----------------------------------------------------------------------

    async def pending(self, subscriber: str | None = None) -> list[tuple[int, str]]:
        """(delivery id, subscriber key) of pending deliveries, oldest first."""
        query = select(EventDeliveryRow.id, EventDeliveryRow.subscriber).where(
            EventDeliveryRow.status == DeliveryStatus.PENDING.value
        )
        if subscriber is not None:
            query = query.where(EventDeliveryRow.subscriber == subscriber)
        async with self._db.read() as session:
            rows = (await session.execute(query.order_by(EventDeliveryRow.id))).all()
        return [(delivery_id, key) for delivery_id, key in rows]

    async def due(self, delivery_id: int) -> Due | None:
        """The delivery's subscriber and next attempt time, or ``None`` unless pending."""
        async with self._db.read() as session:
            found = (
                await session.execute(
                    select(
                        EventDeliveryRow.subscriber,
                        EventDeliveryRow.status,
                        EventDeliveryRow.next_attempt_at,
                    ).where(EventDeliveryRow.id == delivery_id)
                )
            ).first()
        if found is None or found[1] != DeliveryStatus.PENDING.value:
            return None
        return Due(subscriber=found[0], next_attempt_at=found[2])

    async def claim(self, delivery_id: int) -> Claim | None:
        """Commit the start of an attempt; ``None`` if the delivery is no longer pending.

        A delivery whose attempts were all started and none finished (the kernel stopped
        during each) is dead-lettered here instead.
        """
        now = self._clock.now()

        def job(session: Session) -> Claim | None:
            row = session.get(EventDeliveryRow, delivery_id)
            if row is None or row.status != DeliveryStatus.PENDING.value:
                return None
            found = (
                session.execute(
                    select(EventRow, TenantRow.name)
                    .join(TenantRow, TenantRow.id == EventRow.tenant_id)
                    .where(EventRow.seq == row.event_seq)
                )
            ).one()
            event = _event(found[0], found[1])
            if row.attempts >= self.max_attempts:
                error = "the last attempt did not finish (the kernel stopped during it)"
                if row.last_error:
                    error = f"{error}; before that: {row.last_error}"
                row.last_error = error
                self._bury(session, row, found[0].tenant_id, event, now)
                return None
            row.attempts += 1
            row.updated_at = now
            return Claim(
                delivery_id=row.id,
                event_seq=row.event_seq,
                subscriber=row.subscriber,
                attempt=row.attempts,
                event=event,
                pid=row.pid,
                created_at=row.created_at,
            )

        return await self._db.write(job)

    async def fail(self, claim: Claim, error: str, *, retry_at: datetime) -> bool:
        """Record a failed attempt: retry at ``retry_at``, or dead-letter the delivery if it
        has no attempts left. Returns whether a retry is scheduled."""
        now = self._clock.now()

        def job(session: Session) -> bool:
            row = session.get(EventDeliveryRow, claim.delivery_id)
            if row is None or row.status != DeliveryStatus.PENDING.value:
                return False
            row.last_error = error
            row.updated_at = now
            if row.attempts >= self.max_attempts:
                tenant_id = session.scalar(
                    select(EventRow.tenant_id).where(EventRow.seq == row.event_seq)
                )
                assert tenant_id is not None  # the foreign key guarantees the event
                self._bury(session, row, tenant_id, claim.event, now)
                return False
            row.next_attempt_at = retry_at
            return True

        return await self._db.write(job)

    async def succeed(self, claim: Claim, *, pid: int | None) -> None:
        """Mark the delivery delivered (with the pid a trigger spawned)."""
        now = self._clock.now()

        def job(session: Session) -> None:
            row = session.get(EventDeliveryRow, claim.delivery_id)
            if row is None:
                return
            row.status = DeliveryStatus.DELIVERED.value
            row.pid = pid
            row.delivered_at = now
            row.updated_at = now

        await self._db.write(job)

    def _bury(
        self,
        session: Session,
        row: EventDeliveryRow,
        tenant_id: int,
        event: Event,
        now: datetime,
    ) -> None:
        """Move a delivery to the dead-letter queue, audited, in the caller's transaction."""
        row.status = DeliveryStatus.DEAD.value
        row.updated_at = now
        dead = DeadLetterRow(
            delivery_id=row.id,
            tenant_id=tenant_id,
            subscriber=row.subscriber,
            attempts=row.attempts,
            error=row.last_error,
            created_at=now,
        )
        session.add(dead)
        session.flush()
        self.audit_sink.append(
            session,
            AuditRecord(
                event="event.dead_lettered",
                tenant=event.tenant,
                principal=BUS_PRINCIPAL,
                target=event.topic,
                args={
                    "event_id": event.id,
                    "subscriber": row.subscriber,
                    "attempts": row.attempts,
                    "dead_letter_id": dead.id,
                },
                summary=row.last_error,
                correlation_id=event.correlation_id,
            ),
        )

    # -- Dead-letter queue ----------------------------------------------------------------

    async def published(
        self, *, tenant: str, after: int | None, topic: str | None, limit: int
    ) -> list[tuple[int, Event]]:
        """``(seq, event)`` of ``tenant``'s events (see ``EventBus.published``)."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        query = (
            select(EventRow, TenantRow.name)
            .join(TenantRow, TenantRow.id == EventRow.tenant_id)
            .where(TenantRow.name == tenant)
        )
        if topic is not None:
            if topic.endswith("*"):
                # substr, not LIKE: exact and case-sensitive on SQLite as on PostgreSQL
                prefix = topic[:-1]
                query = query.where(func.substr(EventRow.topic, 1, len(prefix)) == prefix)
            else:
                query = query.where(EventRow.topic == topic)
        if after is None:
            query = query.order_by(EventRow.seq.desc()).limit(limit)
        else:
            query = query.where(EventRow.seq > after).order_by(EventRow.seq).limit(limit)
        async with self._db.read() as session:
            rows = (await session.execute(query)).all()
        found = [(row.seq, _event(row, name)) for row, name in rows]
        return found if after is not None else found[::-1]

    async def dead_letters(
        self, *, tenant: str | None, limit: int, include_replayed: bool
    ) -> list[DeadLetter]:
        """Dead letters, newest first (see ``EventBus.dead_letters``)."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        query = _DEAD_LETTERS
        if tenant is not None:
            query = query.where(TenantRow.name == tenant)
        if not include_replayed:
            query = query.where(DeadLetterRow.replayed_at.is_(None))
        query = query.order_by(DeadLetterRow.id.desc()).limit(limit)
        async with self._db.read() as session:
            rows = (await session.execute(query)).all()
        return [_dead_letter(dead, _event(event, name)) for dead, event, name in rows]

    async def replay(
        self, dead_letter_id: int, *, tenant: str | None, by: str
    ) -> tuple[DeadLetter, int]:
        """Make a dead letter's delivery pending again with no attempts used, audited.

        Returns the dead letter as replayed and the delivery id. Raises ``NotFound`` (unknown
        or another tenant's) and ``Conflict`` (already replayed).
        """
        now = self._clock.now()

        def job(session: Session) -> tuple[DeadLetter, int]:
            query = _DEAD_LETTERS.where(DeadLetterRow.id == dead_letter_id)
            found = (session.execute(query)).first()
            if found is None or (tenant is not None and found[2] != tenant):
                where = f" in tenant {tenant!r}" if tenant is not None else ""
                raise NotFound(f"no dead letter {dead_letter_id}{where}")
            dead, event_row, tenant_name = found
            if dead.subscriber == REJECTED:
                raise Conflict(
                    f"dead letter {dead_letter_id} is an event its topic's schema refused "
                    f"({dead.error}); replaying cannot fix it: publish a corrected event "
                    "under a new id"
                )
            if dead.replayed_at is not None:
                raise Conflict(
                    f"dead letter {dead_letter_id} was already replayed by {dead.replayed_by}"
                )
            delivery = session.get(EventDeliveryRow, dead.delivery_id)
            assert delivery is not None  # the foreign key guarantees it
            delivery.status = DeliveryStatus.PENDING.value
            delivery.attempts = 0
            delivery.next_attempt_at = now
            delivery.updated_at = now
            dead.replayed_at = now
            dead.replayed_by = by
            event = _event(event_row, tenant_name)
            self.audit_sink.append(
                session,
                AuditRecord(
                    event="event.replayed",
                    tenant=tenant_name,
                    principal=by,
                    target=event.topic,
                    args={
                        "event_id": event.id,
                        "subscriber": dead.subscriber,
                        "dead_letter_id": dead.id,
                    },
                    correlation_id=event.correlation_id,
                ),
            )
            return _dead_letter(dead, event), dead.delivery_id

        return await self._db.write(job)
