"""The exclusive lease a kernel holds on its database.

One kernel per database until scale-out adds replicas. The lease is an OS-level lock that dies
with the process, so a kernel killed with ``kill -9`` never leaves it held:

* SQLite: ``flock`` on a sidecar file next to the database (``kernos.db.lease``). Not on the
  database file itself: SQLite uses POSIX record locks on it, and closing *any* descriptor of
  that file in the process would silently drop them.
* PostgreSQL: a session-level ``pg_try_advisory_lock`` on a connection held for the kernel's
  life; the server releases it when that connection ends, however the kernel ended.

A refused lease raises ``LeaseHeld`` naming the kernel that holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from kernos.kernel.errors import LeaseHeld, StorageError, StorageUnavailable
from kernos.kernel.settings import shown_url

# Two int4 keys for pg_try_advisory_lock(int, int): "KRNS" and lease number 1.
PG_LOCK_KEYS = (0x4B524E53, 1)


class Lease(ABC):
    """An exclusive, crash-safe claim on one database."""

    @abstractmethod
    def acquire(self, *, started_at: datetime, version: str) -> None:
        """Take the lease or raise ``LeaseHeld`` naming its holder (blocking; run off the loop)."""

    @abstractmethod
    def release(self) -> None:
        """Give the lease back (idempotent)."""

    @property
    @abstractmethod
    def held(self) -> bool:
        """Whether this object holds the lease."""

    @abstractmethod
    def lost(self) -> str | None:
        """Why a held lease is no longer safe to rely on, or ``None`` (blocking; off the loop)."""


def _holder_record(started_at: datetime, version: str) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "version": version,
    }


class FileLease(Lease):
    """``flock`` on ``<database>.lease``; the holder's pid, host and start time are in the file."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lease")
        self.database = database
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, started_at: datetime, version: str) -> None:
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open lease file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LeaseHeld(
                f"database {self.database} is in use by {holder}; stop that kernel "
                "or use another KERNOS_HOME / KERNOS_DATABASE_URL"
            ) from None
        if not _same_file(fd, self.path):
            # Someone removed or replaced the file between our open and our lock: the lock
            # we hold is on an orphan. Start over on the file that is there now.
            os.close(fd)
            self.acquire(started_at=started_at, version=version)
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder_record(started_at, version)).encode(), 0)
        self._fd = fd

    def lost(self) -> str | None:
        if self._fd is None:
            return "the lease was released"
        if not _same_file(self._fd, self.path):
            return f"the lease file {self.path} was removed or replaced"
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _read_holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        data = {}
    if not data.get("pid"):
        return "another Kernos kernel (still starting)"
    return (
        f"the Kernos kernel pid {data['pid']} on host {data.get('host', '?')} "
        f"(version {data.get('version', '?')}, started {data.get('started_at', '?')})"
    )


class PostgresLease(Lease):
    """A session advisory lock on a dedicated connection; ``application_name`` names the holder."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def acquire(self, *, started_at: datetime, version: str) -> None:
        if self._conn is not None:
            return
        try:
            import psycopg
        except ImportError:
            raise StorageError(
                "PostgreSQL needs psycopg 3: pip install 'kernos[postgres]'"
            ) from None
        holder = _holder_record(started_at, version)
        app_name = f"kernos pid={holder['pid']} host={holder['host']}"[:63]
        dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        shown = shown_url(self.url)
        try:
            # Bounded connect, and keepalives so a dead peer is noticed (see lease_lost()).
            conn = psycopg.connect(
                dsn,
                autocommit=True,
                application_name=app_name,
                connect_timeout=10,
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageUnavailable(f"cannot connect to {shown}: {reason}") from exc
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", PG_LOCK_KEYS).fetchone()
        if row is None or not row[0]:
            who = conn.execute(
                "SELECT a.application_name, a.client_addr, a.backend_start"
                " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND l.classid = %s AND l.objid = %s",
                PG_LOCK_KEYS,
            ).fetchone()
            conn.close()
            if who is None:
                described = "another Kernos kernel"
            else:
                app, addr, since = who
                described = (
                    f"the Kernos kernel '{app}' connected from {addr or 'a local socket'} "
                    f"since {since:%Y-%m-%d %H:%M:%S%z}"
                )
            raise LeaseHeld(
                f"database {shown} is in use by {described}; stop that kernel or use another "
                "KERNOS_DATABASE_URL"
            )
        self._conn = conn

    def lost(self) -> str | None:
        if self._conn is None:
            return "the lease was released"
        try:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
                " AND locktype = 'advisory' AND granted AND classid = %s AND objid = %s",
                PG_LOCK_KEYS,
            ).fetchone()
        except Exception as exc:
            return f"the lease connection to PostgreSQL failed ({type(exc).__name__}: {exc})"
        if row is None or row[0] == 0:
            return "the advisory lock is no longer held"
        return None

    def release(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(Exception):
            self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", PG_LOCK_KEYS)
        with contextlib.suppress(Exception):
            self._conn.close()
        self._conn = None


def lease_for(url: URL) -> Lease:
    """The lease kind for a database URL."""
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        return FileLease(Path(url.database))
    return PostgresLease(url)
