"""The single writer: every kernel write goes through one task that commits in groups.

Callers ``submit`` a job (an async function of a session). The writer takes every job waiting
in its queue (up to ``max_batch``), runs them one after another in one transaction and commits
once: one fsync for many writes. If a job raises, the batch is rolled back and run again with
a savepoint around each job, so the failing job rolls back alone and its caller gets the
exception while the others still commit. A job may therefore run more than once before its
commit: it must only work through the session it is given (no outside side effects). A
caller's ``await`` returns only after the commit, so nothing acknowledged is lost in a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from kernos.kernel import telemetry as names
from kernos.kernel.errors import StorageError
from kernos.kernel.telemetry import Telemetry

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteJob = Callable[[AsyncSession], Awaitable[T]]

Batch = list[tuple[WriteJob[Any], "asyncio.Future[Any]"]]
Outcomes = list[tuple["asyncio.Future[Any]", bool, Any]]

_STOP = object()


@dataclass(slots=True)
class WriterStats:
    """Counters for the summary and benchmarks."""

    commits: int = 0
    writes: int = 0
    failed_writes: int = 0
    largest_batch: int = 0


def _reraise_if_writer_cancelled(exc: BaseException) -> None:
    """A job's own CancelledError fails that job; the writer task being cancelled stops it."""
    task = asyncio.current_task()
    if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
        raise exc
    if not isinstance(exc, Exception | asyncio.CancelledError):
        raise exc  # KeyboardInterrupt, SystemExit: not ours to swallow


class Writer:
    """Serializes and group-commits writes on one engine."""

    def __init__(
        self, engine: AsyncEngine, *, max_batch: int = 512, telemetry: Telemetry | None = None
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = WriterStats()
        self._duration = telemetry.instrument(names.STORAGE_COMMIT_DURATION) if telemetry else None
        self._batch_size = telemetry.instrument(names.STORAGE_COMMIT_BATCH) if telemetry else None
        self._tracer = telemetry.tracer if telemetry else None

    def start(self) -> None:
        """Start the writer task on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kernos-writer")
            self._task.add_done_callback(self._on_exit)

    def _on_exit(self, task: asyncio.Task[None]) -> None:
        """However the writer ended, refuse new work and fail what is still queued."""
        self._closed = True
        if not task.cancelled() and task.exception() is not None:
            log.critical("the kernel's writer died", exc_info=task.exception())
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _STOP and not item[1].done():
                item[1].set_exception(StorageError("the kernel's writer stopped"))

    async def submit(self, job: WriteJob[T]) -> T:
        """Run ``job`` in the next group commit and return its result once committed."""
        if self._closed or self._task is None or self._task.done():
            raise StorageError("the kernel's writer is not running; start the kernel first")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await future

    async def stop(self) -> None:
        """Commit everything already submitted, then stop."""
        if self._task is None or self._closed:
            return
        self._closed = True
        self._queue.put_nowait(_STOP)
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            item = await self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self._max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            await self._commit(batch)
        # Anything submitted after stop began (cannot happen through submit) is refused.
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _STOP and not item[1].done():
                item[1].set_exception(StorageError("the kernel's writer stopped"))

    async def _run_batch(self, batch: Batch) -> Outcomes | None:
        """Run and commit a batch in one go; ``None`` (rolled back) if anything failed."""
        outcomes: Outcomes = []
        async with AsyncSession(self._engine, expire_on_commit=False) as session:
            # One flush for the whole batch lets the ORM batch its INSERTs.
            try:
                async with session.begin():
                    for job, future in batch:
                        if not future.cancelled():
                            outcomes.append((future, True, await job(session)))
            except BaseException as exc:  # a job may even raise CancelledError
                _reraise_if_writer_cancelled(exc)
                return None
        return outcomes

    async def _run_isolated(self, batch: Batch) -> Outcomes:
        """Run a batch with a savepoint per job, so a failing job rolls back alone."""
        outcomes: Outcomes = []
        async with (
            AsyncSession(self._engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            for job, future in batch:
                if future.cancelled():
                    continue
                try:
                    async with session.begin_nested():
                        result = await job(session)
                except BaseException as exc:  # see _run_batch
                    _reraise_if_writer_cancelled(exc)
                    outcomes.append((future, False, exc))
                else:
                    outcomes.append((future, True, result))
        return outcomes

    async def _commit(self, batch: Batch) -> None:
        started = time.perf_counter()
        outcomes: Outcomes = []
        span = self._tracer.start_span(names.SPAN_STORAGE_COMMIT) if self._tracer else None
        try:
            # Fast path without savepoints; on a failure, again with one savepoint per job.
            fast = await self._run_batch(batch)
            outcomes = fast if fast is not None else await self._run_isolated(batch)
        except Exception as exc:
            log.exception("group commit of %d writes failed", len(batch))
            error = StorageError(f"database write failed: {exc}")
            error.__cause__ = exc
            for future, ok, value in outcomes:
                if not future.done():
                    future.set_exception(error if ok else value)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            self.stats.failed_writes += len(batch)
            if span is not None:
                span.end()
            return
        elapsed = time.perf_counter() - started
        committed = sum(1 for _, ok, _ in outcomes if ok)
        self.stats.commits += 1
        self.stats.writes += committed
        self.stats.failed_writes += len(outcomes) - committed
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        if self._duration is not None and self._batch_size is not None:
            self._duration.record(elapsed)
            self._batch_size.record(len(batch))
        if span is not None:
            span.set_attribute(names.ATTR_BATCH_SIZE, len(batch))
            span.end()
        for future, ok, value in outcomes:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
