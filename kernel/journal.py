"""The syscall journal's bookkeeping: which calls completed, what processes used, charging.

* ``JournalIndex``: the completed syscall keys of each running process, so the replay stage
  needs no query per call.
* ``UsageBook``: each live process's usage in memory, for budget checks without a query (the
  database stays the truth; the book is loaded when a process starts running).
* ``statements`` and ``charge``: the journal's hot-path SQL, prebuilt once per dialect with
  bound parameters, run on the single writer's thread inside write jobs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Float, Table, bindparam, select
from sqlalchemy.orm import Session

from kernos.kernel.clock import Clock
from kernos.kernel.storage.models import (
    AuditRow,
    ProcessRow,
    SyscallRow,
    TenantRow,
    TenantUsageRow,
    UTCDateTime,
)
from kernos.kernel.syscalls import Usage


class JournalIndex:
    """Which syscalls of each running process completed, so replay needs no query per call.

    Loaded from the journal when a process starts running and kept up to date as results
    commit; a process that is not loaded falls back to reading the journal.
    """

    def __init__(self) -> None:
        self._done: dict[int, set[str]] = {}

    def load(self, pid: int, keys: Iterable[str]) -> None:
        """Start tracking ``pid`` with the keys its journal has as done."""
        self._done[pid] = set(keys)

    def forget(self, pid: int) -> None:
        """Stop tracking ``pid``."""
        self._done.pop(pid, None)

    def add(self, pid: int, key: str) -> None:
        """A result committed."""
        known = self._done.get(pid)
        if known is not None:
            known.add(key)

    def may_be_done(self, pid: int, key: str) -> bool:
        """False only when the key certainly has no completed result."""
        known = self._done.get(pid)
        return known is None or key in known


@dataclass(slots=True)
class _Account:
    used: Usage = field(default_factory=Usage)
    reserved_tool_calls: int = 0
    wall_base: float = 0.0
    running_since: float | None = None


class UsageBook:
    """In-memory mirror of each live process's usage, for budget checks without a query.

    The database is the truth (charged in the journal's result transaction); the book is
    loaded from it when a process (re)starts and updated after each commit.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._accounts: dict[int, _Account] = {}

    def load(self, pid: int, used: Usage, wall_seconds: float) -> None:
        """Start tracking ``pid`` with what the database says it used."""
        self._accounts[pid] = _Account(used=used, wall_base=wall_seconds)

    def forget(self, pid: int) -> None:
        """Stop tracking ``pid``."""
        self._accounts.pop(pid, None)

    def _get(self, pid: int) -> _Account:
        return self._accounts.setdefault(pid, _Account())

    def used(self, pid: int) -> Usage:
        """What ``pid`` has been charged so far."""
        return self._get(pid).used

    def charge(self, pid: int, usage: Usage) -> None:
        """Record a committed charge."""
        self._get(pid).used.add(usage)

    def reserve_tool_call(self, pid: int) -> int:
        """Reserve one tool call; returns calls used plus reserved before this one."""
        account = self._get(pid)
        before = account.used.tool_calls + account.reserved_tool_calls
        account.reserved_tool_calls += 1
        return before

    def release_tool_call(self, pid: int) -> None:
        """Give back a reservation (the call was charged, failed or refused)."""
        account = self._get(pid)
        account.reserved_tool_calls = max(0, account.reserved_tool_calls - 1)

    def start_clock(self, pid: int) -> None:
        """The process started running: its wall time runs."""
        self._get(pid).running_since = self._clock.monotonic()

    def stop_clock(self, pid: int) -> float:
        """The process stopped running; returns its total wall seconds."""
        account = self._get(pid)
        if account.running_since is not None:
            account.wall_base += self._clock.monotonic() - account.running_since
            account.running_since = None
        return account.wall_base

    def wall_seconds(self, pid: int) -> float:
        """Total wall seconds ``pid`` has run, including the current run."""
        account = self._get(pid)
        running = 0.0
        if account.running_since is not None:
            running = self._clock.monotonic() - account.running_since
        return account.wall_base + running


_SYSCALLS = cast(Table, SyscallRow.__table__)
_AUDIT = cast(Table, AuditRow.__table__)
_PROCESSES = cast(Table, ProcessRow.__table__)
_TENANT_USAGE = cast(Table, TenantUsageRow.__table__)


def _dialect_insert(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


class _Statements:
    """The journal's hot-path statements, built once per dialect with bound parameters.

    Building ``insert().values(...)`` per call re-coerces every value and regenerates the
    statement's cache key, which cost more CPU than executing it; executing a prebuilt
    statement with a parameter dict hits SQLAlchemy's compiled cache directly.
    """

    def __init__(self, dialect: str) -> None:
        self.audit = _AUDIT.insert()
        self.intent = _dialect_insert(dialect, _SYSCALLS).on_conflict_do_nothing(
            index_elements=[_SYSCALLS.c.key]
        )
        s = _SYSCALLS.c
        self.retry_intent = (
            _SYSCALLS.update()
            .where(s.key == bindparam("b_key"))
            .values(attempts=s.attempts + 1, status="intent")
        )
        self.result = (
            _SYSCALLS.update()
            .where(s.key == bindparam("b_key"), s.status != "done")
            .values(
                status="done",
                result=bindparam("b_result", type_=JSON),
                error=None,
                input_tokens=bindparam("b_in"),
                output_tokens=bindparam("b_out"),
                cost=bindparam("b_cost"),
                finished_at=bindparam("b_at", type_=UTCDateTime()),
            )
        )
        p = _PROCESSES.c
        # Retention marks a finished process purged; its journal takes no row again.
        self.purged = select(p.pid).where(p.pid == bindparam("b_pid"), p.purged_at.is_not(None))
        self.charge_process = (
            _PROCESSES.update()
            .where(p.pid == bindparam("b_pid"))
            .values(
                input_tokens=p.input_tokens + bindparam("b_in"),
                output_tokens=p.output_tokens + bindparam("b_out"),
                tool_calls=p.tool_calls + bindparam("b_tools"),
                llm_calls=p.llm_calls + bindparam("b_llm"),
                cost=p.cost + bindparam("b_cost", type_=Float),
                updated_at=bindparam("b_at", type_=UTCDateTime()),
            )
        )
        t = _TENANT_USAGE.c
        upsert = _dialect_insert(dialect, _TENANT_USAGE)
        self.charge_tenant = upsert.on_conflict_do_update(
            index_elements=[t.tenant_id],
            set_={
                "input_tokens": t.input_tokens + upsert.excluded.input_tokens,
                "output_tokens": t.output_tokens + upsert.excluded.output_tokens,
                "tool_calls": t.tool_calls + upsert.excluded.tool_calls,
                "llm_calls": t.llm_calls + upsert.excluded.llm_calls,
                "cost": t.cost + upsert.excluded.cost,
            },
        )


_STATEMENTS: dict[str, _Statements] = {}


def statements(dialect: str) -> _Statements:
    """The prebuilt statements for ``dialect`` (``sqlite`` or ``postgresql``)."""
    found = _STATEMENTS.get(dialect)
    if found is None:
        found = _STATEMENTS[dialect] = _Statements(dialect)
    return found


def charge(
    session: Session,
    pid: int,
    tenant: str,
    usage: Usage,
    *,
    now: datetime,
    tenant_ids: dict[str, int],
    dialect: str | None = None,
) -> None:
    """Add ``usage`` to the process row and its tenant's totals (inside the caller's txn).

    ``tenant_ids`` caches tenant name → id for one database (tenant ids never change); the
    caller owns it, one per kernel, so two databases can never share an entry.
    """
    bind = session.get_bind()
    sql = statements(dialect or bind.dialect.name)
    session.execute(
        sql.charge_process,
        {
            "b_pid": pid,
            "b_in": usage.input_tokens,
            "b_out": usage.output_tokens,
            "b_tools": usage.tool_calls,
            "b_llm": usage.llm_calls,
            "b_cost": usage.cost,
            "b_at": now,
        },
    )
    tenant_id = tenant_ids.get(tenant)
    if tenant_id is None:
        tenant_id = session.scalar(select(TenantRow.id).where(TenantRow.name == tenant))
        if tenant_id is None:
            return
        tenant_ids[tenant] = tenant_id
    session.execute(
        sql.charge_tenant,
        {
            "tenant_id": tenant_id,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "tool_calls": usage.tool_calls,
            "llm_calls": usage.llm_calls,
            "cost": usage.cost,
        },
    )
