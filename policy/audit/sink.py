"""``HashChainAuditSink``: the kernel's audit sink, chaining every record as it commits.

``append`` runs inside a write job: it serializes the record's body (so a value that cannot be
serialized fails that job alone) and buffers it in ``session.info``. As a transaction
participant of the single writer, the sink then, once per group commit, assigns the
buffered records their ``seq`` (after the chain's head), hashes them in order and inserts
them with one executemany, just before the commit. The in-memory head advances only after
the commit; a rolled-back job's records are dropped with its savepoint, a rolled-back batch
leaves the head to be read again from the database. So the chain stays gapless and correct
under group commit, savepoint rollback of one job, whole-batch failure and restart.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import String, Table, select, update
from sqlalchemy.orm import Session

from kernos.kernel.clock import Clock
from kernos.kernel.errors import InvalidInput
from kernos.kernel.requests import REQUEST_ID
from kernos.kernel.settings import Settings
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import AuditRow
from kernos.kernel.storage.writer import TransactionParticipant
from kernos.kernel.syscalls import AuditRecord, AuditSink
from kernos.policy.audit.canonical import COLUMNS, GENESIS, body_parts, canonical_body, iso_utc
from kernos.policy.audit.signing import load_signing_key

log = logging.getLogger(__name__)

Redact = Callable[[Session, str, Any], Any]
"""``redact(session, tenant, value)``: what the log may keep of a record's arguments or
summary (secrets and personal data replaced by vault tokens, stored within ``session``)."""

_AUDIT = cast(Table, AuditRow.__table__)
_INSERT = _AUDIT.insert()
_sha256 = hashlib.sha256
_SQLITE_INSERT = (
    "INSERT INTO audit_log (seq, ts, tenant, principal, pid, syscall_key, event, kind, target, "
    "decision, rule, args, summary, trace_id, correlation_id, hash, prev_hash, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LIMITS = tuple(
    (column.name, column.type.length)
    for column in _AUDIT.c
    if column.name in COLUMNS and isinstance(column.type, String) and column.type.length
)

Head = tuple[int, str]
# (row values, body before seq, body after seq, ts as ISO-8601, args as JSON)
Pending = tuple[dict[str, Any], str, str, str, str | None]


class HashChainAuditSink(AuditSink, TransactionParticipant):
    """Appends audit records to the hash chain in ``audit_log`` (see the module docstring).

    Building it registers it with ``db``'s writer; give it to the kernel before ``start``
    (``kernel.audit_sink = HashChainAuditSink(kernel.db, kernel.clock)``), or build it with
    ``await HashChainAuditSink.open(...)`` to read the chain's head at once.
    """

    def __init__(self, db: Database, clock: Clock, *, redact: Redact | None = None) -> None:
        self._clock = clock
        self._redact = redact
        self._head: Head | None = None  # None: read it from the database at the next commit
        # Keys of this sink's state in ``session.info`` (per sink, should two ever follow one
        # database): records appended in this transaction and not yet chained; how many of
        # them there were when the current job started (isolated path); the head this
        # transaction leaves.
        self._pending = f"kernos.audit.{id(self)}.pending"
        self._mark = f"kernos.audit.{id(self)}.mark"
        self._next_head = f"kernos.audit.{id(self)}.head"
        self.adopted = 0
        """Records found without a hash (written by the plain sink) and chained by this sink."""
        self.close = db.add_participant(self)
        """Stop following the database's transactions."""

    @classmethod
    async def open(
        cls,
        db: Database,
        clock: Clock,
        *,
        redact: Redact | None = None,
        settings: Settings | None = None,
    ) -> HashChainAuditSink:
        """A sink on a started database, its head read (unchained records adopted) already.

        With ``settings``, a configured checkpoint signing key is checked now (``ConfigError``
        if it is unreadable, not Ed25519, or inside ``KERNOS_HOME``), not at the first
        checkpoint.
        """
        if settings is not None and settings.audit_signing_key is not None:
            load_signing_key(settings.audit_signing_key, home=settings.home)
        sink = cls(db, clock, redact=redact)

        def load(session: Session) -> None:
            sink._current_head(session)

        await db.write(load)
        return sink

    # -- AuditSink ----------------------------------------------------------------------------

    def append(self, session: Session, record: AuditRecord) -> None:
        args = record.args
        summary = record.summary
        if self._redact is not None:
            if args is not None:
                args = self._redact(session, record.tenant, args)
            if summary is not None:
                summary = self._redact(session, record.tenant, summary)
        ts = self._clock.now()
        values: dict[str, Any] = {
            "ts": ts,
            "tenant": record.tenant,
            "principal": record.principal,
            "pid": record.pid,
            "syscall_key": record.syscall_key,
            "event": record.event,
            "kind": record.kind,
            "target": record.target,
            "decision": record.decision,
            "rule": record.rule,
            "args": args,
            "summary": summary,
            "trace_id": record.trace_id,
            # An operator's action with no process to correlate with: the request's id.
            "correlation_id": record.correlation_id or REQUEST_ID.get(),
        }
        for name, limit in _LIMITS:
            value = values[name]
            if value is not None and len(value) > limit:
                # Fail this job now: the insert runs for the whole group commit at its end,
                # where one bad record would fail every job of the batch.
                raise InvalidInput(
                    f"audit record {name} is {len(value)} characters long; at most {limit} fit"
                )
        iso = iso_utc(ts)
        head, tail, args_json = body_parts(values, iso)
        info = session.info
        pending = info.get(self._pending)
        if pending is None:
            pending = info[self._pending] = []
        pending.append((values, head, tail, iso, args_json))

    # -- TransactionParticipant ---------------------------------------------------------------

    def job_started(self, session: Session) -> None:
        session.info[self._mark] = len(session.info.get(self._pending) or ())

    def job_failed(self, session: Session) -> None:
        pending = session.info.get(self._pending)
        if pending:
            del pending[session.info.get(self._mark, 0) :]

    def before_commit(self, session: Session) -> None:
        pending: list[Pending] | None = session.info.pop(self._pending, None)
        if not pending:
            return
        seq, prev = self._current_head(session)
        connection = session.connection()
        if connection.dialect.name == "sqlite":
            # The driver directly, values already in SQLAlchemy's SQLite storage format:
            # per-row bind processing cost more than hashing and inserting together.
            rows: list[Any] = []
            for values, head, tail, iso, args_json in pending:
                seq += 1
                body = f'{head[:-1]},"seq":{seq},{tail[1:]}'
                digest = _sha256((prev + body).encode()).hexdigest()
                rows.append(
                    (
                        seq,
                        f"{iso[:10]} {iso[11:26]}",
                        values["tenant"],
                        values["principal"],
                        values["pid"],
                        values["syscall_key"],
                        values["event"],
                        values["kind"],
                        values["target"],
                        values["decision"],
                        values["rule"],
                        args_json,
                        values["summary"],
                        values["trace_id"],
                        values["correlation_id"],
                        digest,
                        prev,
                        body,
                    )
                )
                prev = digest
            connection.exec_driver_sql(_SQLITE_INSERT, rows)
        else:
            for values, head, tail, _, _ in pending:
                seq += 1
                body = f'{head[:-1]},"seq":{seq},{tail[1:]}'
                digest = _sha256((prev + body).encode()).hexdigest()
                values["seq"] = seq
                values["prev_hash"] = prev
                values["hash"] = digest
                values["body"] = body
                prev = digest
            session.execute(_INSERT, [values for values, *_ in pending])
        session.info[self._next_head] = (seq, prev)

    def after_commit(self, session: Session) -> None:
        head = session.info.get(self._next_head)
        if head is not None:
            self._head = head

    def after_rollback(self, session: Session) -> None:
        # Nothing this transaction chained is in the database. Read the head again next
        # time rather than trust memory: a failed commit may still have reached the disk.
        self._head = None

    # -- Head ---------------------------------------------------------------------------------

    def _current_head(self, session: Session) -> Head:
        head: Head | None = session.info.get(self._next_head) or self._head
        if head is None:
            head = self._load_head(session)
            session.info[self._next_head] = head
        return head

    def _load_head(self, session: Session) -> Head:
        c = _AUDIT.c
        last = session.execute(select(c.seq, c.hash).order_by(c.seq.desc()).limit(1)).first()
        if last is None:
            return 0, GENESIS
        if last.hash is not None:
            return int(last.seq), str(last.hash)
        return self._adopt_unchained(session)

    def _adopt_unchained(self, session: Session) -> Head:
        """Chain the records at the end of the log that have no hash (the plain sink's)."""
        c = _AUDIT.c
        chained = session.execute(
            select(c.seq, c.hash).where(c.hash.is_not(None)).order_by(c.seq.desc()).limit(1)
        ).first()
        seq, prev = (0, GENESIS) if chained is None else (int(chained.seq), str(chained.hash))
        columns = [getattr(c, name) for name in COLUMNS]
        rows = session.execute(select(c.seq, *columns).where(c.seq > seq).order_by(c.seq)).all()
        for row in rows:
            seq += 1
            if row.seq != seq:  # ascending, so the new seq never collides (see migration 0006)
                session.execute(update(_AUDIT).where(c.seq == row.seq).values(seq=seq))
            values = {name: getattr(row, name) for name in COLUMNS}
            body = canonical_body(values, seq=seq, ts=row.ts)
            digest = _sha256((prev + body).encode()).hexdigest()
            session.execute(
                update(_AUDIT).where(c.seq == seq).values(hash=digest, prev_hash=prev, body=body)
            )
            prev = digest
        if rows:
            self.adopted += len(rows)
            log.warning(
                "chained %d audit records that were written without the hash chain "
                "(by a kernel without the policy layer?)",
                len(rows),
            )
        return seq, prev
