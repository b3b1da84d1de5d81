"""Durable store-and-forward queue for the edge agent, kept in a local SQLite file.

Events the edge agent accepts are appended here before anything is sent, and leave only when
the kernel acknowledges them (:meth:`ForwardBuffer.ack`), so a crash, a reboot or a network
outage never loses an accepted event. When a ``max_events`` bound is set, appending past it
raises :class:`BufferFull` instead of dropping anything.

Sequence numbers increase strictly and are never reused, even after every event has been
acknowledged, so a forwarder may remember "acked up to N" safely.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

__all__ = [
    "BufferFileError",
    "BufferFull",
    "BufferStats",
    "BufferedEvent",
    "ForwardBuffer",
    "PendingEvent",
]

logger = logging.getLogger(__name__)

# Stored in the SQLite header so that a buffer file is recognisable and nobody's other
# database gets tables added to it. The bytes spell "KEDG".
_APPLICATION_ID: Final = 0x4B454447
_SCHEMA_VERSION: Final = 1
# A second process (the CLI draining, say) may hold the write lock briefly; wait, don't fail.
_BUSY_TIMEOUT_S: Final = 5.0
# Keeps the WAL file from staying large on a small device after a burst of traffic.
_JOURNAL_SIZE_LIMIT_BYTES: Final = 4 * 1024 * 1024

# AUTOINCREMENT, not a plain rowid: after every event is acked, a plain rowid would start
# again at 1 and a forwarder's "acked up to N" would silently cover new events.
_CREATE_EVENTS: Final = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    appended_at REAL NOT NULL
)
"""


class BufferFull(Exception):
    """Appending would take the buffer past its ``max_events`` bound.

    Nothing from the refused call is stored; everything accepted before stays buffered.
    """

    def __init__(self, *, max_events: int, buffered: int) -> None:
        super().__init__(
            f"forward buffer is full ({buffered} of {max_events} events buffered); "
            "nothing from this append was stored: forward and ack events first"
        )
        self.max_events = max_events
        self.buffered = buffered


class BufferFileError(Exception):
    """The file exists but is not a Kernos edge buffer this version can use."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingEvent:
    """An event to append with :meth:`ForwardBuffer.append_many`."""

    topic: str
    payload: Mapping[str, Any]
    event_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferedEvent:
    """An event waiting in the buffer to be forwarded.

    ``payload`` is the JSON round trip of what was appended (tuples come back as lists).
    ``appended_at`` is wall-clock Unix time, in seconds.
    """

    seq: int
    topic: str
    payload: dict[str, Any]
    event_id: str | None
    appended_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferStats:
    """A snapshot of a buffer: how many events, how much disk, which sequence numbers."""

    count: int
    bytes_on_disk: int
    oldest_seq: int | None
    newest_seq: int | None


_EncodedEvent = tuple[str, str, str | None]


class ForwardBuffer:
    """A durable FIFO of events on a local SQLite file (WAL mode, ``synchronous=FULL``).

    An append has reached the disk when it returns. Safe to share between the threads of one
    process; meant for one writing process at a time.

    ``create=False`` opens an existing buffer only (``FileNotFoundError`` otherwise).
    ``clock`` gives the wall-clock time stamped on appended events.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_events: int | None = None,
        create: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_events is not None and (
            isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1
        ):
            raise ValueError(f"max_events must be a positive integer or None, got {max_events!r}")
        self._path = Path(path)
        self._max_events = max_events
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = _connect(self._path, create=create)

    @property
    def path(self) -> Path:
        """The buffer file."""
        return self._path

    @property
    def max_events(self) -> int | None:
        """The bound on buffered events, or ``None`` for no bound."""
        return self._max_events

    def append(self, topic: str, payload: Mapping[str, Any], *, event_id: str | None = None) -> int:
        """Store one event durably and return its sequence number.

        If ``event_id`` is already buffered, nothing is stored and the existing event's
        sequence number is returned (an id can be reused once its event has been acked).
        Raises :class:`BufferFull` past ``max_events`` and ``ValueError`` for an empty topic
        or a payload that is not a JSON-serialisable object.
        """
        return self._append_encoded([_encode(topic, payload, event_id)])[0]

    def append_many(self, events: Iterable[PendingEvent]) -> list[int]:
        """Store several events in one transaction; return their sequence numbers in order.

        All or nothing: an invalid event or :class:`BufferFull` stores none of them.
        Duplicate ids behave as in :meth:`append`, within the batch too.
        """
        encoded = [_encode(event.topic, event.payload, event.event_id) for event in events]
        if not encoded:
            return []
        return self._append_encoded(encoded)

    def peek(self, limit: int) -> list[BufferedEvent]:
        """Return up to ``limit`` of the oldest buffered events, in append order."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        with self._lock:
            rows = (
                self._open_conn()
                .execute(
                    "SELECT seq, topic, payload, event_id, appended_at FROM events "
                    "ORDER BY seq LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [
            BufferedEvent(
                seq=seq,
                topic=topic,
                payload=json.loads(payload),
                event_id=event_id,
                appended_at=appended_at,
            )
            for seq, topic, payload, event_id, appended_at in rows
        ]

    def ack(self, up_to_seq: int) -> int:
        """Remove every event with a sequence number up to ``up_to_seq``; return how many."""
        if isinstance(up_to_seq, bool) or not isinstance(up_to_seq, int) or up_to_seq < 0:
            raise ValueError(f"up_to_seq must be a non-negative integer, got {up_to_seq!r}")
        with self._transaction() as conn:
            removed: int = conn.execute("DELETE FROM events WHERE seq <= ?", (up_to_seq,)).rowcount
            emptied = (
                bool(removed) and conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is None
            )
        if emptied:
            self._give_back_space()
        if removed:
            logger.debug("acked %d event(s) up to seq %d in %s", removed, up_to_seq, self._path)
        return removed

    def __len__(self) -> int:
        """The number of buffered events."""
        with self._lock:
            row = self._open_conn().execute("SELECT count(*) FROM events").fetchone()
        return int(row[0])

    def oldest_age(self, now: float | None = None) -> float | None:
        """Seconds since the oldest buffered event was appended, or ``None`` when empty.

        ``now`` is wall-clock Unix time (default: the buffer's clock).
        """
        with self._lock:
            row = self._open_conn().execute("SELECT min(appended_at) FROM events").fetchone()
        if row[0] is None:
            return None
        current = self._clock() if now is None else now
        # Never negative: devices without a real-time clock may step their clock backwards.
        return max(0.0, current - float(row[0]))

    def stats(self) -> BufferStats:
        """Count, size on disk and sequence range of the buffered events."""
        with self._lock:
            count, oldest, newest = (
                self._open_conn()
                .execute("SELECT count(*), min(seq), max(seq) FROM events")
                .fetchone()
            )
        return BufferStats(
            count=int(count),
            bytes_on_disk=_bytes_on_disk(self._path),
            oldest_seq=oldest,
            newest_seq=newest,
        )

    def close(self) -> None:
        """Close the file. Safe to call more than once; any other use afterwards fails."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        """Return the buffer itself; it is closed when the block ends."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the buffer."""
        self.close()

    def __repr__(self) -> str:
        """Show the file and the bound, not the contents (reading them takes I/O)."""
        return f"ForwardBuffer({str(self._path)!r}, max_events={self._max_events!r})"

    def _append_encoded(self, events: list[_EncodedEvent]) -> list[int]:
        appended_at = self._clock()
        seqs: list[int] = []
        with self._transaction() as conn:
            buffered = 0
            if self._max_events is not None:
                buffered = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
            before = buffered
            for topic, payload, event_id in events:
                if event_id is not None:
                    existing = conn.execute(
                        "SELECT seq FROM events WHERE event_id = ?", (event_id,)
                    ).fetchone()
                    if existing is not None:
                        seqs.append(int(existing[0]))
                        continue
                if self._max_events is not None and buffered >= self._max_events:
                    # Raising rolls the whole call back: the caller learns nothing was kept.
                    raise BufferFull(max_events=self._max_events, buffered=before)
                cursor = conn.execute(
                    "INSERT INTO events (event_id, topic, payload, appended_at) "
                    "VALUES (?, ?, ?, ?)",
                    (event_id, topic, payload, appended_at),
                )
                seq = cursor.lastrowid
                assert seq is not None  # an INSERT into a rowid table always sets it
                seqs.append(seq)
                buffered += 1
        return seqs

    def _give_back_space(self) -> None:
        # Once the backlog is gone, shrink the file: after an outage it may have grown far
        # beyond what a small device wants to keep allocated.
        with self._lock:
            # executescript, not execute: the sqlite3 module steps a statement without result
            # columns only once, and incremental_vacuum frees one page per step.
            self._open_conn().executescript("PRAGMA incremental_vacuum")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._open_conn()
            # IMMEDIATE takes the write lock up front, so the duplicate-id check and the bound
            # check cannot be invalidated by another writer before the insert.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                # SQLite may already have rolled back on its own (disk full, say).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"forward buffer {self._path} is closed")
        return self._conn


def _encode(topic: str, payload: Mapping[str, Any], event_id: str | None) -> _EncodedEvent:
    """Validate one event and turn its payload into canonical JSON."""
    if not isinstance(topic, str) or not topic.strip():
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    if event_id is not None and (not isinstance(event_id, str) or not event_id):
        raise ValueError(f"event_id must be a non-empty string or None, got {event_id!r}")
    if not isinstance(payload, Mapping):
        raise ValueError(
            f"payload for topic {topic!r} must be a JSON object (a mapping), "
            f"got {type(payload).__name__}"
        )
    try:
        # Canonical: sorted keys, no whitespace, ASCII only, no NaN/Infinity (not JSON), so
        # equal payloads are stored as equal text whatever their key order.
        text = json.dumps(
            dict(payload),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"payload for topic {topic!r} is not JSON-serialisable: {exc}") from exc
    for name, value in (("topic", topic), ("event_id", event_id)):
        if value is not None and not _is_utf8(value):
            raise ValueError(f"{name} {value!r} cannot be stored: it is not valid Unicode text")
    return topic, text, event_id


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from undecodable file names
        return False
    return True


def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Open (and with ``create``, initialise) the buffer file at ``path``."""
    if path.is_dir():
        raise BufferFileError(f"{path} is a directory, not a buffer file")
    if not create and not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no forward buffer file", str(path))
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    # mode=rw makes SQLite itself refuse to create the file, even if it vanished just now.
    uri = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
    conn = sqlite3.connect(
        uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        _prepare(conn, path, create=create)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: Path, *, create: bool) -> None:
    """Check the file is ours (creating the schema in an empty one) and set the pragmas."""
    # Only reads until the file is known to be ours: a foreign database must stay untouched
    # (switching it to WAL would already rewrite its header).
    try:
        application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        has_tables = conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None
    except sqlite3.DatabaseError as exc:
        raise BufferFileError(f"{path} is not a Kernos edge buffer: {exc}") from exc
    if application_id == 0 and not has_tables:
        if not create:
            raise BufferFileError(f"{path} is not a Kernos edge buffer: it is empty")
        _initialise(conn)
    elif application_id != _APPLICATION_ID:
        raise BufferFileError(f"{path} is not a Kernos edge buffer (it is another SQLite file)")
    schema_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if schema_version > _SCHEMA_VERSION:
        raise BufferFileError(
            f"{path} was written by a newer kernos-edge (buffer schema {schema_version}, "
            f"this version reads up to {_SCHEMA_VERSION})"
        )
    journal_mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
    if journal_mode.lower() != "wal":
        # Some filesystems (no shared memory) refuse WAL; FULL sync keeps appends durable.
        logger.warning("buffer %s runs in %s journal mode, not WAL", path, journal_mode)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA journal_size_limit={_JOURNAL_SIZE_LIMIT_BYTES}")


def _initialise(conn: sqlite3.Connection) -> None:
    """Create the schema in an empty database file."""
    # auto_vacuum only takes effect if set before the first table exists.
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have initialised the file while we waited for the lock.
        if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:
            conn.execute(_CREATE_EVENTS)
            conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _bytes_on_disk(path: Path) -> int:
    """Size of the database file plus its WAL and shared-memory index, where present."""
    total = 0
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            total += candidate.stat().st_size
        except FileNotFoundError:
            continue
    return total
