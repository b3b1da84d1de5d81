"""The Kernos checkpointer: LangGraph checkpoints stored through the kernel's single writer.

Three tables (``storage.models``): ``checkpoints`` holds each checkpoint encoded by the saver's
serde, with small scalar channel values inlined; ``checkpoint_blobs`` holds every other channel
value once per (channel, version), so a step writes only the channels it changed;
``checkpoint_writes`` holds the pending writes of tasks. Writes go through ``Database.write``
(group commit), reads through ``Database.read``. An ``on_checkpoint`` hook runs inside the
write job of ``aput``, so the kernel commits a step's checkpoint and its own rows together.

The saver is async-only: the kernel drives graphs with ``ainvoke``/``astream``.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, NoReturn, Protocol, TypeAlias, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    and_,
    bindparam,
    delete,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Tuple
from sqlalchemy.sql.expression import cast as sql_cast

from kernos.kernel.errors import Conflict
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import (
    CheckpointBlobRow,
    CheckpointRow,
    CheckpointWriteRow,
    ProcessRow,
)

log = logging.getLogger(__name__)

__all__ = ["CheckpointHook", "KernosCheckpointSaver", "refuse_purged"]

ASYNC_ONLY = (
    "the Kernos checkpointer is async-only: run graphs with ainvoke/astream "
    "and use the a-prefixed saver and graph methods (aget_state, aget_tuple, ...)"
)
PRUNE_STRATEGIES = ("keep_latest", "delete")
# Strings up to this length stay in the checkpoint row: rewriting them each step costs less
# than a blob row and a lookup. Longer strings, bytes and containers (which tend to grow,
# like message lists) are written once per version in checkpoint_blobs.
INLINE_MAX_CHARS = 256
LIST_PAGE = 50  # checkpoints loaded per read session while listing
IN_CHUNK = 500  # keys per IN (...) list: far below SQLite's and PostgreSQL's parameter limits
DELTA_KEY = "counters_since_delta_snapshot"

_CHECKPOINTS = cast(Table, CheckpointRow.__table__)
_BLOBS = cast(Table, CheckpointBlobRow.__table__)
_WRITES = cast(Table, CheckpointWriteRow.__table__)
_PROCESSES = cast(Table, ProcessRow.__table__)
# A thread whose process retention purged takes no write again (a late write must not revive
# it): one look-up by the unique thread id, in the write's own transaction.
_PURGED = select(_PROCESSES.c.pid).where(
    _PROCESSES.c.thread_id == bindparam("thread_id"), _PROCESSES.c.purged_at.is_not(None)
)
BlobKey: TypeAlias = tuple[str, str, str, str]  # thread_id, checkpoint_ns, channel, version
CheckpointKey: TypeAlias = tuple[str, str, str]  # thread_id, checkpoint_ns, checkpoint_id
T = TypeVar("T")


class CheckpointHook(Protocol):
    """Called inside ``aput``'s write job: whatever it writes commits with the checkpoint.

    It may run more than once before the commit (the writer retries a failed group), so it
    must only work through ``session``. Raising rolls the checkpoint back and fails ``aput``.
    ``config`` is the config ``aput`` was given (thread, namespace, parent checkpoint id and
    the run's configurable keys); the new checkpoint's id is ``checkpoint["id"]``.
    """

    def __call__(
        self,
        session: Session,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        /,
    ) -> None: ...


def refuse_purged(session: Session, thread_id: str) -> None:
    """``Conflict`` if ``thread_id`` belongs to a process whose data retention purged."""
    pid = session.execute(_PURGED, {"thread_id": thread_id}).scalar()
    if pid is not None:
        raise Conflict(
            f"process {pid} finished and its checkpoints were purged by retention; "
            "a purged process takes no new checkpoint (start a new run instead)"
        )


def _inline(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return True
    return isinstance(value, str) and len(value) <= INLINE_MAX_CHARS


def _chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _key(table: Table, last: str = "checkpoint_id") -> Tuple:
    """(thread_id, checkpoint_ns, ``last``) of ``table``, to match checkpoint keys with IN."""
    return tuple_(table.c.thread_id, table.c.checkpoint_ns, table.c[last])


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class KernosCheckpointSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpoint saver on the kernel database (SQLite or PostgreSQL).

    Channel versions are strings ``"<counter>.<random>"`` like the Postgres saver's, so two
    forks of one checkpoint never write different values under the same blob key.
    """

    def __init__(
        self,
        db: Database,
        *,
        serde: SerializerProtocol | None = None,
        on_checkpoint: CheckpointHook | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self._db = db
        self._on_checkpoint = on_checkpoint
        # Built once: constructing ON CONFLICT clauses costs more than executing them.
        self._add_blobs = self._insert(_BLOBS).on_conflict_do_nothing()
        self._put_checkpoint = self._upsert(
            _CHECKPOINTS, "type", "checkpoint", "metadata", "run_id"
        )
        self._keep_writes = self._insert(_WRITES).on_conflict_do_nothing()
        self._replace_writes = self._upsert(_WRITES, "channel", "type", "blob", "task_path")

    # -- writing --------------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store ``checkpoint`` and the values of the channels in ``new_versions``.

        Returns the config of the stored checkpoint. Raises ``StorageError`` if the write
        fails, or whatever ``on_checkpoint`` raised (the checkpoint is then not stored).
        """
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        checkpoint_ns = str(configurable.get("checkpoint_ns", ""))
        values = checkpoint["channel_values"]
        inlined = {k: v for k, v in values.items() if _inline(v)}
        scope = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}
        blob_rows = [
            {**scope, "channel": channel, "version": str(version), "type": type_, "blob": blob}
            for channel, version in new_versions.items()
            if channel in values and channel not in inlined
            for type_, blob in [self.serde.dumps_typed(values[channel])]
        ]
        stored_metadata = get_serializable_checkpoint_metadata(config, metadata)
        type_, data = self.serde.dumps_typed({**checkpoint, "channel_values": inlined})
        run_id = stored_metadata.get("run_id")
        row = {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint["id"],
            "parent_checkpoint_id": configurable.get("checkpoint_id"),
            "run_id": None if run_id is None else str(run_id),
            "type": type_,
            "checkpoint": data,
            "metadata": stored_metadata,
        }
        hook = self._on_checkpoint

        def job(session: Session) -> None:
            refuse_purged(session, thread_id)
            if blob_rows:
                session.execute(self._add_blobs, blob_rows)
            session.execute(self._put_checkpoint, [row])
            if hook is not None:
                hook(session, config, checkpoint, metadata)

        await self._db.write(job)
        return _config(thread_id, checkpoint_ns, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes against the checkpoint in ``config``.

        Special channels (error, interrupt, resume, scheduled) have fixed indexes and replace
        what the task stored before; regular writes are kept as first stored (a replayed task
        does not duplicate them). Raises ``StorageError`` if the write fails.
        """
        if not writes:
            return
        configurable = config["configurable"]
        key = {
            "thread_id": str(configurable["thread_id"]),
            "checkpoint_ns": str(configurable.get("checkpoint_ns", "")),
            "checkpoint_id": str(configurable["checkpoint_id"]),
            "task_id": task_id,
            "task_path": task_path,
        }
        rows = []
        for idx, (channel, value) in enumerate(writes):
            type_, blob = self.serde.dumps_typed(value)
            row = {"idx": WRITES_IDX_MAP.get(channel, idx), "channel": channel}
            rows.append({**key, **row, "type": type_, "blob": blob})
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        stmt = self._replace_writes if replace else self._keep_writes

        def job(session: Session) -> None:
            refuse_purged(session, key["thread_id"])
            session.execute(stmt, rows)

        await self._db.write(job)

    def _insert(self, table: Table) -> Any:
        """A dialect INSERT, for its ON CONFLICT clauses (the same API on both backends)."""
        return pg_insert(table) if self._db.dialect == "postgresql" else sqlite_insert(table)

    def _upsert(self, table: Table, *replaced: str) -> Any:
        """INSERT that replaces the ``replaced`` columns of a row with the same key."""
        stmt = self._insert(table)
        return stmt.on_conflict_do_update(
            index_elements=table.primary_key.columns,
            set_={name: stmt.excluded[name] for name in replaced},
        )

    # -- reading --------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint in ``config``, or the thread's latest in its namespace if it names
        none; ``None`` if there is no such checkpoint. Pending writes are in
        ``writes_sort_key`` order."""
        configurable = config["configurable"]
        c = _CHECKPOINTS.c
        query = select(_CHECKPOINTS).where(
            c.thread_id == str(configurable["thread_id"]),
            c.checkpoint_ns == str(configurable.get("checkpoint_ns", "")),
        )
        if checkpoint_id := get_checkpoint_id(config):
            query = query.where(c.checkpoint_id == checkpoint_id)
        else:
            query = query.order_by(c.checkpoint_id.desc()).limit(1)
        async with self._db.read() as session:
            rows = (await session.execute(query)).all()
            loaded = await self._load(session, rows)
        return loaded[0] if loaded else None

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints matching ``config`` (thread, and namespace and id if given), whose
        metadata has every key/value of ``filter``, older than ``before``; newest first,
        at most ``limit``."""
        c = _CHECKPOINTS.c
        conditions = self._list_conditions(config, filter, before)
        order = (c.checkpoint_id, c.thread_id, c.checkpoint_ns)
        remaining = limit
        after: tuple[str, str, str] | None = None
        while remaining is None or remaining > 0:
            # Pages keep no read session open while the caller consumes the tuples.
            page = LIST_PAGE if remaining is None else min(LIST_PAGE, remaining)
            query = select(_CHECKPOINTS).where(*conditions)
            if after is not None:
                query = query.where(tuple_(*order) < tuple_(*after))
            query = query.order_by(*(col.desc() for col in order)).limit(page)
            async with self._db.read() as session:
                rows = (await session.execute(query)).all()
                loaded = await self._load(session, rows)
            for item in loaded:
                yield item
            if len(rows) < page:
                return
            last = rows[-1]
            after = (last.checkpoint_id, last.thread_id, last.checkpoint_ns)
            if remaining is not None:
                remaining -= len(rows)

    def _list_conditions(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
    ) -> list[ColumnElement[bool]]:
        c = _CHECKPOINTS.c
        conditions: list[ColumnElement[bool]] = []
        if config is not None:
            configurable = config["configurable"]
            conditions.append(c.thread_id == str(configurable["thread_id"]))
            if (checkpoint_ns := configurable.get("checkpoint_ns")) is not None:
                conditions.append(c.checkpoint_ns == str(checkpoint_ns))
            if checkpoint_id := get_checkpoint_id(config):
                conditions.append(c.checkpoint_id == checkpoint_id)
        if filter:
            conditions.extend(self._metadata_matches(filter))
        if before is not None and (before_id := get_checkpoint_id(before)):
            conditions.append(c.checkpoint_id < before_id)
        return conditions

    def _metadata_matches(self, filter: dict[str, Any]) -> list[ColumnElement[bool]]:
        column = _CHECKPOINTS.c.metadata
        if self._db.dialect == "postgresql":
            # Containment (@>), as LangGraph's Postgres saver filters.
            return [sql_cast(column, JSONB).contains(filter)]
        matches: list[ColumnElement[bool]] = []
        for key, value in filter.items():
            if '"' in key or "\\" in key:
                # ValueError, as LangGraph's own savers answer a bad filter key.
                raise ValueError(f"metadata filter key {key!r} may not contain quotes")
            extracted = func.json_extract(column, f'$."{key}"')
            if value is None:
                matches.append(extracted.is_(None))
            elif isinstance(value, dict | list):
                matches.append(extracted == func.json(json.dumps(value)))
            else:
                # json_extract gives SQL scalars (true as 1), which compare with Python's.
                matches.append(extracted == value)
        return matches

    async def _load(self, session: AsyncSession, rows: Sequence[Row[Any]]) -> list[CheckpointTuple]:
        """Checkpoint rows as tuples: their blob-stored channel values and writes loaded."""
        if not rows:
            return []
        decoded = [self.serde.loads_typed((row.type, row.checkpoint)) for row in rows]
        wanted: set[BlobKey] = set()
        for row, checkpoint in zip(rows, decoded, strict=True):
            for channel, version in checkpoint["channel_versions"].items():
                if channel not in checkpoint["channel_values"]:
                    wanted.add((row.thread_id, row.checkpoint_ns, channel, str(version)))
        blobs = await self._fetch_blobs(session, wanted)
        writes = await self._fetch_writes(
            session, [(row.thread_id, row.checkpoint_ns, row.checkpoint_id) for row in rows]
        )
        tuples = []
        for row, checkpoint in zip(rows, decoded, strict=True):
            for channel, version in checkpoint["channel_versions"].items():
                key = (row.thread_id, row.checkpoint_ns, channel, str(version))
                if key in blobs:
                    checkpoint["channel_values"][channel] = blobs[key]
            parent = row.parent_checkpoint_id
            tuples.append(
                CheckpointTuple(
                    config=_config(row.thread_id, row.checkpoint_ns, row.checkpoint_id),
                    checkpoint=cast(Checkpoint, checkpoint),
                    metadata=cast(CheckpointMetadata, row.metadata),
                    parent_config=(
                        _config(row.thread_id, row.checkpoint_ns, parent) if parent else None
                    ),
                    pending_writes=writes.get(
                        (row.thread_id, row.checkpoint_ns, row.checkpoint_id), []
                    ),
                )
            )
        return tuples

    async def _fetch_blobs(
        self, session: AsyncSession, keys: Iterable[BlobKey]
    ) -> dict[BlobKey, Any]:
        b = _BLOBS.c
        columns = (b.thread_id, b.checkpoint_ns, b.channel, b.version)
        values: dict[BlobKey, Any] = {}
        for chunk in _chunks(sorted(keys)):
            query = select(*columns, b.type, b.blob).where(tuple_(*columns).in_(chunk))
            for row in await session.execute(query):
                key = (row.thread_id, row.checkpoint_ns, row.channel, row.version)
                values[key] = self.serde.loads_typed((row.type, row.blob))
        return values

    async def _fetch_writes(
        self, session: AsyncSession, keys: Sequence[CheckpointKey]
    ) -> dict[CheckpointKey, list[PendingWrite]]:
        rows: list[Row[Any]] = []
        for chunk in _chunks(keys):
            rows.extend(await session.execute(select(_WRITES).where(_key(_WRITES).in_(chunk))))
        rows.sort(key=lambda row: writes_sort_key(row.task_path, row.task_id, row.idx))
        found: dict[CheckpointKey, list[PendingWrite]] = {}
        for row in rows:
            value = self.serde.loads_typed((row.type, row.blob))
            found.setdefault((row.thread_id, row.checkpoint_ns, row.checkpoint_id), []).append(
                (row.task_id, row.channel, value)
            )
        return found

    # -- deleting, copying, pruning -------------------------------------------------------

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, blob and write of ``thread_id`` (no error if none)."""
        await self._delete_threads([str(thread_id)])

    async def _delete_threads(self, thread_ids: Sequence[str]) -> None:
        def job(session: Session) -> None:
            for table in (_CHECKPOINTS, _BLOBS, _WRITES):
                for chunk in _chunks(thread_ids):
                    session.execute(delete(table).where(table.c.thread_id.in_(chunk)))

        await self._db.write(job)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata ``run_id`` is in ``run_ids``, their writes,
        and the blobs no remaining checkpoint uses. Later checkpoints whose parent is gone
        lose their ``parent_config``."""
        runs = [str(run_id) for run_id in run_ids]
        if not runs:
            return

        def job(session: Session) -> None:
            c = _CHECKPOINTS.c
            doomed: list[CheckpointKey] = []
            for chunk in _chunks(runs):
                query = select(c.thread_id, c.checkpoint_ns, c.checkpoint_id)
                rows = session.execute(query.where(c.run_id.in_(chunk)))
                doomed.extend((r.thread_id, r.checkpoint_ns, r.checkpoint_id) for r in rows)
            self._drop_checkpoints(session, doomed)
            for thread_id, checkpoint_ns in sorted({(t, ns) for t, ns, _ in doomed}):
                self._collect_blobs(session, thread_id, checkpoint_ns)

        await self._db.write(job)

    def _drop_checkpoints(self, session: Session, keys: Sequence[CheckpointKey]) -> None:
        """Delete checkpoints and their writes; detach children from deleted parents."""
        for chunk in _chunks(keys):
            session.execute(delete(_WRITES).where(_key(_WRITES).in_(chunk)))
            session.execute(delete(_CHECKPOINTS).where(_key(_CHECKPOINTS).in_(chunk)))
            session.execute(
                update(_CHECKPOINTS)
                .where(_key(_CHECKPOINTS, "parent_checkpoint_id").in_(chunk))
                .values(parent_checkpoint_id=None)
            )

    def _collect_blobs(self, session: Session, thread_id: str, checkpoint_ns: str) -> int:
        """Delete the blobs of one thread namespace that no remaining checkpoint uses;
        returns how many."""
        c, b = _CHECKPOINTS.c, _BLOBS.c
        used: set[tuple[str, str]] = set()
        query = select(c.type, c.checkpoint).where(
            c.thread_id == thread_id, c.checkpoint_ns == checkpoint_ns
        )
        for row in session.execute(query):
            versions = self.serde.loads_typed((row.type, row.checkpoint))["channel_versions"]
            used.update((channel, str(version)) for channel, version in versions.items())
        scope = and_(b.thread_id == thread_id, b.checkpoint_ns == checkpoint_ns)
        stored = session.execute(select(b.channel, b.version).where(scope))
        garbage = [(r.channel, r.version) for r in stored if (r.channel, r.version) not in used]
        for chunk in _chunks(garbage):
            session.execute(delete(_BLOBS).where(scope, tuple_(b.channel, b.version).in_(chunk)))
        return len(garbage)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob and write of one thread to another (ids unchanged).

        Raises ``Conflict`` if the target thread already has checkpoints.
        """
        source, target = str(source_thread_id), str(target_thread_id)

        def job(session: Session) -> None:
            taken = select(_CHECKPOINTS.c.thread_id).where(_CHECKPOINTS.c.thread_id == target)
            if (session.execute(taken.limit(1))).first() is not None:
                raise Conflict(
                    f"thread {target!r} already has checkpoints; delete it before copying into it"
                )
            for table in (_CHECKPOINTS, _BLOBS, _WRITES):
                names = [col.name for col in table.columns]
                picked = [
                    literal(target, table.c.thread_id.type).label("thread_id")
                    if name == "thread_id"
                    else table.c[name]
                    for name in names
                ]
                rows = select(*picked).where(table.c.thread_id == source)
                session.execute(table.insert().from_select(names, rows))

        await self._db.write(job)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: ``"keep_latest"`` keeps each namespace's latest checkpoint (with
        its writes and the blobs it uses), ``"delete"`` removes everything.

        Raises ``TypeError`` for a single string, ``ValueError`` for an unknown strategy, and
        ``NotImplementedError`` for ``keep_latest`` on a thread that uses a ``DeltaChannel``
        (its state lives in the ancestors that pruning would delete).
        """
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread ids, not a str")
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(f"unknown prune strategy {strategy!r}; use one of {PRUNE_STRATEGIES}")
        threads = sorted({str(thread_id) for thread_id in thread_ids})
        if not threads:
            return
        if strategy == "delete":
            await self._delete_threads(threads)
            return

        def job(session: Session) -> None:
            self._refuse_delta_threads(session, threads)
            for thread_id in threads:
                self._keep_latest(session, thread_id)

        await self._db.write(job)
        log.info("pruned %d threads to their latest checkpoints", len(threads))

    def _refuse_delta_threads(self, session: Session, threads: Sequence[str]) -> None:
        c = _CHECKPOINTS.c
        if self._db.dialect == "postgresql":
            uses_delta = sql_cast(c.metadata, JSONB).has_key(DELTA_KEY)
        else:
            uses_delta = func.json_type(c.metadata, f"$.{DELTA_KEY}").is_not(None)
        for chunk in _chunks(threads):
            query = select(c.thread_id).where(c.thread_id.in_(chunk), uses_delta).distinct()
            if found := sorted((session.execute(query)).scalars()):
                raise NotImplementedError(
                    f"keep_latest can't prune threads that use a DeltaChannel: {', '.join(found)}"
                )

    def _keep_latest(self, session: Session, thread_id: str) -> None:
        c = _CHECKPOINTS.c
        heads = session.execute(
            select(c.checkpoint_ns, func.max(c.checkpoint_id).label("head"))
            .where(c.thread_id == thread_id)
            .group_by(c.checkpoint_ns)
        )
        for checkpoint_ns, head in heads.all():
            # Only the writes of deleted checkpoints go: a task's writes may commit before
            # the checkpoint they belong to.
            unkept = session.execute(
                select(c.checkpoint_id).where(
                    c.thread_id == thread_id,
                    c.checkpoint_ns == checkpoint_ns,
                    c.checkpoint_id != head,
                )
            )
            doomed = [(thread_id, checkpoint_ns, cid) for cid in unkept.scalars()]
            if doomed:
                self._drop_checkpoints(session, doomed)
                self._collect_blobs(session, thread_id, checkpoint_ns)

    def keep_last_in(
        self, session: Session, thread_id: str, checkpoint_ns: str, *, keep: int, limit: int
    ) -> dict[str, int]:
        """Delete up to ``limit`` of the oldest checkpoints beyond the newest ``keep`` of one
        thread namespace (with their writes), then the blobs no remaining checkpoint uses, in
        the caller's transaction; returns the rows deleted per table (none for a thread that
        uses a ``DeltaChannel``: its state lives in the ancestors). For retention."""
        counts = {"checkpoints": 0, "checkpoint_writes": 0, "checkpoint_blobs": 0}
        try:
            self._refuse_delta_threads(session, [thread_id])
        except NotImplementedError:
            return counts
        c = _CHECKPOINTS.c
        doomed_ids = session.execute(
            select(c.checkpoint_id)
            .where(c.thread_id == thread_id, c.checkpoint_ns == checkpoint_ns)
            .order_by(c.checkpoint_id.desc())
            .offset(keep)
        ).scalars()
        doomed = [(thread_id, checkpoint_ns, cid) for cid in doomed_ids][-limit:]
        if not doomed:
            return counts
        for chunk in _chunks(doomed):
            counts["checkpoint_writes"] += _rowcount(
                session.execute(delete(_WRITES).where(_key(_WRITES).in_(chunk)))
            )
            counts["checkpoints"] += _rowcount(
                session.execute(delete(_CHECKPOINTS).where(_key(_CHECKPOINTS).in_(chunk)))
            )
            session.execute(
                update(_CHECKPOINTS)
                .where(_key(_CHECKPOINTS, "parent_checkpoint_id").in_(chunk))
                .values(parent_checkpoint_id=None)
            )
        counts["checkpoint_blobs"] = self._collect_blobs(session, thread_id, checkpoint_ns)
        return counts

    # -- versions ---------------------------------------------------------------------------

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """The version after ``current``: a zero-padded counter and a random fraction, so
        versions sort as strings and forks of one checkpoint never share one."""
        if current is None:
            counter = 0
        elif isinstance(current, int):
            counter = current
        else:
            counter = int(current.split(".")[0])
        # Not security-sensitive: the fraction only separates forks' versions.
        return f"{counter + 1:032}.{random.random():016}"  # noqa: S311

    # -- the synchronous API: refused ----------------------------------------------------

    def _refused(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: the Kernos checkpointer is async-only; raises ``NotImplementedError``."""
        raise NotImplementedError(ASYNC_ONLY)

    get_tuple = put = put_writes = list = _refused
    delete_thread = delete_for_runs = copy_thread = prune = _refused
