"""The policy in the kernel database: ``sqlalchemy_adapter`` on the kernel's single writer.

Rules live in ``policy_rules`` (the adapter's layout, ``PolicyRuleRow`` as its ``db_class``)
and ``policy_version`` holds one counter, bumped in the same transaction as every change, so
any process can tell with one small read whether its copy of the policy is current.

The adapter never opens a session of its own. Its ``_session_scope`` is redirected to a
session we bind around each call: for changes, the session of a job on the kernel's single
writer (so a policy change is an ordinary group-committed write — on SQLite no second
writing connection exists that could meet "database is locked"); for loads, a read-only
snapshot transaction on this module's own small engine (WAL readers never block the writer).
Everything here is blocking: the engine runs loads in a thread and changes as writer jobs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import casbin  # type: ignore[import-untyped]
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session
from sqlalchemy_adapter import Adapter  # type: ignore[import-untyped]

from kernos.kernel.errors import Conflict, InvalidInput, NotFound, StorageError
from kernos.kernel.storage.migrate import sync_url
from kernos.kernel.storage.models import PolicyRuleRow, PolicyVersionRow
from kernos.policy.cache import build_enforcer
from kernos.policy.rules import PolicyLine, parse_line

VERSION_ID = 1
"""The primary key of the one ``policy_version`` row (created by migration 0007)."""


class KernosAdapter(Adapter):  # type: ignore[misc]  # sqlalchemy_adapter is untyped
    """``sqlalchemy_adapter.Adapter`` that persists only inside a session bound by the caller."""

    def __init__(self) -> None:
        super().__init__(None, db_class=PolicyRuleRow, create_table=False)
        self._bound = threading.local()

    @contextmanager
    def bound(self, session: Session) -> Iterator[KernosAdapter]:
        """Route the adapter's reads and writes through ``session`` on this thread."""
        previous = getattr(self._bound, "session", None)
        self._bound.session = session
        try:
            yield self
        finally:
            self._bound.session = previous

    @contextmanager
    def _session_scope(self) -> Iterator[Session]:
        session: Session | None = getattr(self._bound, "session", None)
        if session is None:
            raise StorageError("the policy adapter was used outside a bound session")
        yield session  # the owner of the session commits (the writer) or ends it (a load)

    def load_policy(self, model: Any) -> None:
        """Load every rule into ``model`` in insertion order (stable rule explanations)."""
        with self._session_scope() as session:
            for row in session.scalars(select(PolicyRuleRow).order_by(PolicyRuleRow.id)):
                casbin.persist.load_policy_line(str(row), model)


def _read_only(engine: Engine, *, sqlite: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if sqlite:
            # Take transaction control from the driver so BEGIN opens a read snapshot that
            # spans the version read and the rule load (pysqlite would autocommit SELECTs).
            dbapi_connection.isolation_level = None
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA query_only=ON")
        else:
            cursor.execute(
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, "
                "READ ONLY"
            )
            dbapi_connection.commit()
        cursor.close()

    if sqlite:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN")


class PolicyStore:
    """Reads the policy with its own read-only engine; builds the writer jobs that change it."""

    def __init__(self, url: URL) -> None:
        """``url``: the kernel database (``Database.url``; the sync driver is derived)."""
        sqlite = url.get_backend_name() == "sqlite"
        self._engine = create_engine(
            sync_url(url),
            pool_size=1,
            max_overflow=1,
            pool_pre_ping=not sqlite,
            hide_parameters=True,
            **({"connect_args": {"check_same_thread": False}} if sqlite else {}),
        )
        _read_only(self._engine, sqlite=sqlite)
        self.adapter = KernosAdapter()

    def close(self) -> None:
        """Close the read connections."""
        self._engine.dispose()

    # -- Reads (blocking; run in a thread) --------------------------------------------------

    def read_version(self) -> int:
        """The policy version committed now."""
        with Session(self._engine) as session, session.begin():
            return _version(session)

    def load(self) -> tuple[int, casbin.Enforcer, list[PolicyLine]]:
        """The version, an enforcer loaded through the adapter, and the lines, from one snapshot.

        ``InvalidInput`` if a stored line is malformed (written around this module).
        """
        with Session(self._engine) as session, session.begin():
            version = _version(session)
            with self.adapter.bound(session):
                enforcer = build_enforcer(())
                enforcer.set_adapter(self.adapter)
                enforcer.load_policy()
        enforcer.set_adapter(None)
        lines: list[PolicyLine] = []
        for ptype, rules in (
            ("p", enforcer.get_policy()),
            ("g", enforcer.get_grouping_policy()),
        ):
            for rule in rules:
                text = ", ".join([ptype, *rule])
                try:
                    lines.append(parse_line(text, roles=()))
                except InvalidInput as exc:
                    raise InvalidInput(f"stored policy version {version}: {exc.message}") from None
        return version, enforcer, lines

    # -- Writer jobs (run on the writer's thread, inside its transaction) -------------------

    def seed_job(self, lines: Sequence[PolicyLine], *, now: datetime) -> Callable[[Session], int]:
        """A job that stores ``lines`` if the policy was never seeded; returns the version."""

        def job(session: Session) -> int:
            row = _lock_version(session)
            if row.version != 0:
                return row.version
            empty = session.scalar(select(func.count()).select_from(PolicyRuleRow)) == 0
            if empty:
                with self.adapter.bound(session):
                    for line in lines:
                        self.adapter.add_policy(line.ptype, line.ptype, list(line.fields))
            row.version, row.changed_at = 1, now
            return row.version

        return job

    def change_job(
        self, line: PolicyLine, *, add: bool, now: datetime, strict: bool = True
    ) -> Callable[[Session], tuple[int, int] | None]:
        """A job that adds or removes ``line`` and bumps the version in the same transaction.

        Returns (version before, version after), or ``None`` when there was nothing to do and
        ``strict`` is false. With ``strict``: ``Conflict`` if an added line exists already,
        ``NotFound`` if a removed one does not.
        """

        def job(session: Session) -> tuple[int, int] | None:
            row = _lock_version(session)  # serializes changers across processes (PostgreSQL)
            exists = _exists(session, line)
            if exists == add:
                if not strict:
                    return None
                if add:
                    raise Conflict(f"the policy already has {line.text!r}")
                raise NotFound(f"the policy has no line {line.text!r}; see `kernos policy list`")
            with self.adapter.bound(session):
                if add:
                    self.adapter.add_policy(line.ptype, line.ptype, list(line.fields))
                else:
                    self.adapter.remove_policy(line.ptype, line.ptype, list(line.fields))
            before = row.version
            row.version, row.changed_at = before + 1, now
            return before, row.version

        return job


def _version(session: Session) -> int:
    version = session.scalar(
        select(PolicyVersionRow.version).where(PolicyVersionRow.id == VERSION_ID)
    )
    if version is None:
        raise StorageError("the policy_version row is missing; the database was not migrated")
    return version


def _lock_version(session: Session) -> PolicyVersionRow:
    row = session.scalar(
        select(PolicyVersionRow).where(PolicyVersionRow.id == VERSION_ID).with_for_update()
    )
    if row is None:
        raise StorageError("the policy_version row is missing; the database was not migrated")
    return row


def _exists(session: Session, line: PolicyLine) -> bool:
    columns = (
        PolicyRuleRow.v0,
        PolicyRuleRow.v1,
        PolicyRuleRow.v2,
        PolicyRuleRow.v3,
        PolicyRuleRow.v4,
        PolicyRuleRow.v5,
    )
    query = select(PolicyRuleRow.id).where(PolicyRuleRow.ptype == line.ptype)
    for index, column in enumerate(columns):
        value = line.fields[index] if index < len(line.fields) else None
        query = query.where(column.is_(None) if value is None else column == value)
    return session.scalar(query.limit(1)) is not None
