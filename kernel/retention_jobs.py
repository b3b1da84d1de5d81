"""Retention's write jobs: bounded deletions on the single writer, each with its audit record.

Every job deletes at most about ``limit`` rows of one kind in one tenant, in one short
transaction, and appends one ``retention.purged`` audit record with its counts in that same
transaction — so nothing is ever deleted without its record, even when a pass stops midway;
the next pass finds what is left and goes on. A job that finds nothing returns zero counts and
writes nothing. ``count_*`` are the dry-run twins: read-only counts of what jobs would delete.

A finished process's checkpoints (``max_age``) and journal go only after the process is marked
purged (``processes.purged_at``), in the same job or an earlier one: from then on the
checkpointer and the journal refuse writes for it, so a late write cannot bring it back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    delete,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from kernos.kernel.storage.models import (
    CheckpointBlobRow,
    CheckpointRow,
    CheckpointWriteRow,
    DeadLetterRow,
    EventDeliveryRow,
    EventRow,
    ProcessRow,
    SyscallRow,
)
from kernos.kernel.syscalls import AuditRecord, AuditSink

if TYPE_CHECKING:
    from kernos.kernel.checkpointer import KernosCheckpointSaver

PURGED_EVENT = "retention.purged"
"""Audit event of every retention deletion."""

FINISHED_STATES = ("done", "failed", "killed")
_IN_CHUNK = 500
_LISTED = 100  # pids named in one audit record

_P = cast(Table, ProcessRow.__table__)
_SYSCALLS = cast(Table, SyscallRow.__table__)
_CHECKPOINTS = cast(Table, CheckpointRow.__table__)
_BLOBS = cast(Table, CheckpointBlobRow.__table__)
_WRITES = cast(Table, CheckpointWriteRow.__table__)
_EVENTS = cast(Table, EventRow.__table__)
_DELIVERIES = cast(Table, EventDeliveryRow.__table__)
_DEAD = cast(Table, DeadLetterRow.__table__)
CHECKPOINT_TABLES = (_WRITES, _BLOBS, _CHECKPOINTS)
"""Deleted in this order, so a thread with rows left always still has checkpoints or writes."""

Counts = dict[str, int]
Job = Callable[[Session], Counts]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """What one job works on: a tenant, the rule's cutoff and who asked."""

    tenant: str
    tenant_id: int
    cutoff: datetime
    """Rows older than this are due (for ``keep_last``: unused)."""
    now: datetime
    rule: str
    """The rule as audited: ``max_age=2592000s``, ``keep_last=1``."""
    principal: str
    limit: int


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + _IN_CHUNK] for i in range(0, len(items), _IN_CHUNK)]


def _audit(
    session: Session,
    sink: AuditSink,
    scope: Scope,
    kind: str,
    counts: Counts,
    pids: Sequence[int] = (),
) -> None:
    args: dict[str, Any] = {"rule": scope.rule, "cutoff": scope.cutoff.isoformat(), **counts}
    if pids:
        args["pids"] = sorted(pids)[:_LISTED]
    sink.append(
        session,
        AuditRecord(
            event=PURGED_EVENT,
            tenant=scope.tenant,
            principal=scope.principal,
            kind=kind,
            target=scope.rule,
            args=args,
            summary=", ".join(f"{n} {name}" for name, n in counts.items() if n),
        ),
    )


def _delete_by_key(session: Session, table: Table, where: ColumnElement[bool], limit: int) -> int:
    """Delete at most ``limit`` rows of ``table`` matching ``where``, by primary key."""
    key = list(table.primary_key.columns)
    found = [tuple(row) for row in session.execute(select(*key).where(where).limit(limit))]
    for chunk in _chunks(found):
        if len(key) == 1:
            session.execute(delete(table).where(key[0].in_([k[0] for k in chunk])))
        else:
            session.execute(delete(table).where(tuple_(*key).in_(chunk)))
    return len(found)


# -- Finished processes: checkpoints (max_age) and journal --------------------------------


def _finished(scope: Scope) -> list[ColumnElement[bool]]:
    return [
        _P.c.tenant_id == scope.tenant_id,
        _P.c.state.in_(FINISHED_STATES),
        _P.c.finished_at < scope.cutoff,
    ]


def _has_rows(kind: str) -> ColumnElement[bool]:
    if kind == "journal":
        return exists(select(_SYSCALLS.c.key).where(_SYSCALLS.c.pid == _P.c.pid))
    return or_(
        *(
            exists(select(t.c.thread_id).where(t.c.thread_id == _P.c.thread_id))
            for t in CHECKPOINT_TABLES
        )
    )


def purge_processes_job(kind: str, scope: Scope, sink: AuditSink) -> Job:
    """Mark due finished processes purged, then delete their ``kind`` rows (``checkpoints``:
    checkpoints, blobs and writes; ``journal``: syscall rows), at most ``limit`` of each."""

    def job(session: Session) -> Counts:
        due = _finished(scope)
        fresh = list(
            session.execute(
                select(_P.c.pid)
                .where(*due, _P.c.purged_at.is_(None))
                .order_by(_P.c.pid)
                .limit(scope.limit)
            ).scalars()
        )
        for chunk in _chunks(fresh):
            session.execute(update(_P).where(_P.c.pid.in_(chunk)).values(purged_at=scope.now))
        marked = select(_P.c.thread_id if kind != "journal" else _P.c.pid).where(
            *due, _P.c.purged_at.is_not(None)
        )
        counts: Counts = {"processes": len(fresh)}
        budget = scope.limit
        if kind == "journal":
            counts["syscalls"] = _delete_by_key(
                session, _SYSCALLS, _SYSCALLS.c.pid.in_(marked.scalar_subquery()), budget
            )
        else:
            for table in CHECKPOINT_TABLES:
                where = table.c.thread_id.in_(marked.scalar_subquery())
                deleted = _delete_by_key(session, table, where, max(budget, 0))
                counts[str(table.name)] = deleted
                budget -= deleted
        if any(counts.values()):
            _audit(session, sink, scope, kind, counts, fresh)
        return counts

    return job


def count_processes(kind: str, scope: Scope) -> Callable[[Session], Counts]:
    """What ``purge_processes_job`` would delete, all jobs together (read-only)."""

    def read(session: Session) -> Counts:
        due = _finished(scope)
        fresh = session.scalar(
            select(func.count()).select_from(_P).where(*due, _P.c.purged_at.is_(None))
        )
        counts: Counts = {"processes": int(fresh or 0)}
        if kind == "journal":
            pids = select(_P.c.pid).where(*due).scalar_subquery()
            counts["syscalls"] = _count(session, _SYSCALLS, _SYSCALLS.c.pid.in_(pids))
        else:
            threads = select(_P.c.thread_id).where(*due).scalar_subquery()
            for table in CHECKPOINT_TABLES:
                counts[str(table.name)] = _count(session, table, table.c.thread_id.in_(threads))
        return counts

    return read


def _count(session: Session, table: Table, where: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(table).where(where)) or 0)


# -- Finished processes: keep the last N checkpoints ---------------------------------------


def _over_keep(scope: Scope, keep: int) -> Any:
    c = _CHECKPOINTS.c
    return (
        select(c.thread_id, c.checkpoint_ns, func.count().label("n"))
        .join(_P, _P.c.thread_id == c.thread_id)
        .where(_P.c.tenant_id == scope.tenant_id, _P.c.state.in_(FINISHED_STATES))
        .group_by(c.thread_id, c.checkpoint_ns)
        .having(func.count() > keep)
    )


def keep_last_job(scope: Scope, sink: AuditSink, saver: KernosCheckpointSaver, *, keep: int) -> Job:
    """Prune finished processes' thread namespaces to their newest ``keep`` checkpoints."""

    def job(session: Session) -> Counts:
        counts: Counts = {"checkpoints": 0, "checkpoint_writes": 0, "checkpoint_blobs": 0}
        threads: set[str] = set()
        budget = scope.limit
        for row in session.execute(_over_keep(scope, keep)).all():
            if budget <= 0:
                break
            # Writes and blobs come with each checkpoint: about three rows per checkpoint.
            got = saver.keep_last_in(
                session, row.thread_id, row.checkpoint_ns, keep=keep, limit=max(1, budget // 3)
            )
            for name, n in got.items():
                counts[name] += n
            if got["checkpoints"]:
                threads.add(row.thread_id)
            budget -= sum(got.values())
        if any(counts.values()):
            pids = session.execute(select(_P.c.pid).where(_P.c.thread_id.in_(sorted(threads))))
            _audit(session, sink, scope, "checkpoints", counts, list(pids.scalars()))
        return counts

    return job


def count_keep_last(scope: Scope, *, keep: int) -> Callable[[Session], Counts]:
    """Checkpoints ``keep_last_job`` would delete (blobs are only known when it runs)."""

    def read(session: Session) -> Counts:
        over = _over_keep(scope, keep).subquery()
        total = session.scalar(select(func.coalesce(func.sum(over.c.n - keep), 0)))
        return {"checkpoints": int(total or 0)}

    return read


# -- Dead letters ---------------------------------------------------------------------------


def dead_letters_job(scope: Scope, sink: AuditSink) -> Job:
    """Delete dead letters older than the cutoff, and their deliveries if still dead."""

    def job(session: Session) -> Counts:
        d = _DEAD.c
        found = session.execute(
            select(d.id, d.delivery_id)
            .where(d.tenant_id == scope.tenant_id, d.created_at < scope.cutoff)
            .order_by(d.id)
            .limit(scope.limit)
        ).all()
        counts: Counts = {"dead_letters": 0, "deliveries": 0}
        for chunk in _chunks(found):
            counts["dead_letters"] += _rowcount(
                session.execute(delete(_DEAD).where(d.id.in_([r.id for r in chunk])))
            )
            counts["deliveries"] += _rowcount(
                session.execute(
                    delete(_DELIVERIES).where(
                        _DELIVERIES.c.id.in_([r.delivery_id for r in chunk]),
                        _DELIVERIES.c.status == "dead",
                    )
                )
            )
        if any(counts.values()):
            _audit(session, sink, scope, "dead_letters", counts)
        return counts

    return job


def count_dead_letters(scope: Scope) -> Callable[[Session], Counts]:
    """Dead letters ``dead_letters_job`` would delete."""

    def read(session: Session) -> Counts:
        d = _DEAD.c
        where = (d.tenant_id == scope.tenant_id) & (d.created_at < scope.cutoff)
        return {"dead_letters": _count(session, _DEAD, where)}

    return read


# -- Idempotency records --------------------------------------------------------------------


def _settled_events(scope: Scope) -> list[ColumnElement[bool]]:
    """Events past the cutoff whose every delivery succeeded before it, none dead-lettered."""
    dl = _DELIVERIES.c
    unsettled = exists(
        select(dl.id).where(
            dl.event_seq == _EVENTS.c.seq,
            or_(dl.status != "delivered", dl.updated_at >= scope.cutoff),
        )
    )
    lettered = exists(
        select(_DEAD.c.id)
        .join(_DELIVERIES, _DELIVERIES.c.id == _DEAD.c.delivery_id)
        .where(dl.event_seq == _EVENTS.c.seq)
    )
    # The newest event of all stays: on SQLite a new event's seq is the largest one + 1, and
    # a reused seq would hide events from readers that follow the log by seq (``after=``).
    newest = select(func.max(_EVENTS.c.seq)).scalar_subquery()
    return [
        _EVENTS.c.tenant_id == scope.tenant_id,
        _EVENTS.c.time < scope.cutoff,
        _EVENTS.c.seq < newest,
        ~unsettled,
        ~lettered,
    ]


def _spawn_keys(scope: Scope) -> list[ColumnElement[bool]]:
    return [*_finished(scope), _P.c.spawn_key.is_not(None)]


def idempotency_job(scope: Scope, sink: AuditSink) -> Job:
    """Delete settled events past the cutoff (with their deliveries) and clear the spawn keys
    of processes finished before it."""

    def job(session: Session) -> Counts:
        seqs = list(
            session.execute(
                select(_EVENTS.c.seq).where(*_settled_events(scope)).limit(scope.limit)
            ).scalars()
        )
        counts: Counts = {"events": 0, "deliveries": 0, "spawn_keys": 0}
        for chunk in _chunks(seqs):
            counts["deliveries"] += _rowcount(
                session.execute(delete(_DELIVERIES).where(_DELIVERIES.c.event_seq.in_(chunk)))
            )
            counts["events"] += _rowcount(
                session.execute(delete(_EVENTS).where(_EVENTS.c.seq.in_(chunk)))
            )
        pids = list(
            session.execute(
                select(_P.c.pid).where(*_spawn_keys(scope)).limit(scope.limit)
            ).scalars()
        )
        for chunk in _chunks(pids):
            counts["spawn_keys"] += _rowcount(
                session.execute(update(_P).where(_P.c.pid.in_(chunk)).values(spawn_key=None))
            )
        if any(counts.values()):
            _audit(session, sink, scope, "idempotency", counts, pids)
        return counts

    return job


def count_idempotency(scope: Scope) -> Callable[[Session], Counts]:
    """Events and spawn keys ``idempotency_job`` would delete."""

    def read(session: Session) -> Counts:
        events = session.scalar(
            select(func.count()).select_from(_EVENTS).where(*_settled_events(scope))
        )
        keys = session.scalar(select(func.count()).select_from(_P).where(*_spawn_keys(scope)))
        return {"events": int(events or 0), "spawn_keys": int(keys or 0)}

    return read


__all__ = [
    "CHECKPOINT_TABLES",
    "FINISHED_STATES",
    "PURGED_EVENT",
    "Counts",
    "Scope",
    "count_dead_letters",
    "count_idempotency",
    "count_keep_last",
    "count_processes",
    "dead_letters_job",
    "idempotency_job",
    "keep_last_job",
    "purge_processes_job",
]
