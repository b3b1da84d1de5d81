"""The single writer: every kernel write goes through one task that commits in groups.

Callers ``submit`` a job — a plain (synchronous) function of a SQLAlchemy ``Session``. The
writer takes every job waiting in its queue (up to ``max_batch``) and runs them all, one after
another, in one transaction on its own thread, with one commit: one fsync and one hop off the
event loop for many writes. Running the batch synchronously on a dedicated thread, instead of
awaiting an async driver statement by statement, is what keeps a journal write cheap (ADR
0003: about four times less CPU per statement than aiosqlite's per-statement thread hops).

If a job raises, the batch is rolled back and run again with a savepoint around each job, so
the failing job rolls back alone and its caller gets the exception while the others still
commit. A job may therefore run more than once before its commit: it must only work through
the session it is given (no outside side effects, no awaiting). A caller's ``await`` returns
only after the commit, so nothing acknowledged is lost in a crash.

A ``TransactionParticipant`` (the hash-chained audit log) follows each group commit on the
writer's thread: ``before_commit`` may add its own rows for the whole batch (one executemany),
``after_commit``/``after_rollback`` learn how it ended, and on the isolated path
``job_started``/``job_failed`` bracket each job so a participant can drop what a rolled-back
job left in ``session.info``. With no participant registered the writer does no extra work.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from kernos.kernel import telemetry as names
from kernos.kernel.errors import StorageError
from kernos.kernel.requests import REQUEST_ID
from kernos.kernel.telemetry import Telemetry

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteJob = Callable[[Session], T]
"""A write: a synchronous function of the writer's session, run on the writer's thread."""

Outcome = tuple[bool, Any]  # (ok, result or exception)

_STOP = object()


class TransactionParticipant:
    """Follows the writer's transactions, on the writer's thread (override what you need).

    Every method gets the batch's session; what a participant keeps per transaction belongs in
    ``session.info`` (a new session per attempt). ``before_commit`` runs after the batch's
    last job, inside the transaction: an exception there fails the whole batch, so anything
    that can fail because of one job's data must fail inside that job instead.
    """

    def job_started(self, session: Session) -> None:
        """A job is about to run in its own savepoint (the isolated path after a failure)."""

    def job_failed(self, session: Session) -> None:
        """The job that just ran raised: its savepoint was rolled back."""

    def before_commit(self, session: Session) -> None:
        """Every job of the batch ran; the transaction commits next."""

    def after_commit(self, session: Session) -> None:
        """The transaction committed (exceptions here are logged, never raised)."""

    def after_rollback(self, session: Session) -> None:
        """The transaction was rolled back (the batch is retried, or failed)."""


@dataclass(slots=True)
class WriterStats:
    """Counters for the summary and benchmarks."""

    commits: int = 0
    writes: int = 0
    failed_writes: int = 0
    largest_batch: int = 0


def _in_context(context: contextvars.Context, job: WriteJob[T]) -> WriteJob[T]:
    def run(session: Session) -> T:
        return context.run(job, session)

    return run


class Writer:
    """Serializes and group-commits writes on one synchronous engine."""

    def __init__(
        self, engine: Engine, *, max_batch: int = 512, telemetry: Telemetry | None = None
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernos-writer")
        self._closed = False
        self.stats = WriterStats()
        self._duration = telemetry.instrument(names.STORAGE_COMMIT_DURATION) if telemetry else None
        self._batch_size = telemetry.instrument(names.STORAGE_COMMIT_BATCH) if telemetry else None
        self._tracer = telemetry.tracer if telemetry else None
        self.participants: Sequence[TransactionParticipant] = ()
        """Followers of every transaction; replaced whole (never mutated) while running."""

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
        if REQUEST_ID.get() is not None:
            # Run it in the submitter's context, so what it records (audit sinks fill an
            # operator action's correlation id) knows the request it serves.
            job = _in_context(contextvars.copy_context(), job)
        self._queue.put_nowait((job, future))
        return await future

    async def stop(self) -> None:
        """Commit everything already submitted, then stop."""
        if self._task is None or self._closed:
            self._thread.shutdown(wait=False)
            return
        self._closed = True
        self._queue.put_nowait(_STOP)
        await asyncio.gather(self._task, return_exceptions=True)
        self._thread.shutdown(wait=True)

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

    async def _commit(self, batch: list[tuple[WriteJob[Any], asyncio.Future[Any]]]) -> None:
        live = [(job, future) for job, future in batch if not future.cancelled()]
        if not live:
            return
        started = time.perf_counter()
        span = self._tracer.start_span(names.SPAN_STORAGE_COMMIT) if self._tracer else None
        jobs = [job for job, _ in live]
        try:
            outcomes = await asyncio.get_running_loop().run_in_executor(
                self._thread, self._commit_sync, jobs
            )
        except Exception as exc:
            log.exception("group commit of %d writes failed", len(live))
            error = StorageError(f"database write failed: {exc}")
            error.__cause__ = exc
            for _, future in live:
                if not future.done():
                    future.set_exception(error)
            self.stats.failed_writes += len(live)
            if span is not None:
                span.end()
            return
        committed = sum(1 for ok, _ in outcomes if ok)
        self.stats.commits += 1
        self.stats.writes += committed
        self.stats.failed_writes += len(outcomes) - committed
        self.stats.largest_batch = max(self.stats.largest_batch, len(live))
        if self._duration is not None and self._batch_size is not None:
            self._duration.record(time.perf_counter() - started)
            self._batch_size.record(len(live))
        if span is not None:
            span.set_attribute(names.ATTR_BATCH_SIZE, len(live))
            span.end()
        for (_, future), (ok, value) in zip(live, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    # -- On the writer's thread -------------------------------------------------------------

    def _commit_sync(self, jobs: list[WriteJob[Any]]) -> list[Outcome]:
        """Fast path: every job, one flush, one commit; on any failure, one savepoint each."""
        fast = self._run_batch(jobs)
        return fast if fast is not None else self._run_isolated(jobs)

    def _run_batch(self, jobs: list[WriteJob[Any]]) -> list[Outcome] | None:
        outcomes: list[Outcome] = []
        participants = self.participants  # one read per batch: add_participant swaps the tuple
        with Session(self._engine, expire_on_commit=False) as session:
            try:
                with session.begin():
                    for job in jobs:
                        outcomes.append((True, job(session)))
                    for participant in participants:
                        participant.before_commit(session)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # even a job's CancelledError must not kill the writer
                _rolled_back(participants, session)
                return None
            _committed(participants, session)
        return outcomes

    def _run_isolated(self, jobs: list[WriteJob[Any]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        participants = self.participants
        with Session(self._engine, expire_on_commit=False) as session:
            try:
                with session.begin():
                    for job in jobs:
                        for participant in participants:
                            participant.job_started(session)
                        try:
                            with session.begin_nested():
                                result = job(session)
                        except (KeyboardInterrupt, SystemExit):
                            raise
                        except BaseException as exc:  # see _run_batch
                            for participant in participants:
                                participant.job_failed(session)
                            outcomes.append((False, exc))
                        else:
                            outcomes.append((True, result))
                    for participant in participants:
                        participant.before_commit(session)
            except BaseException:
                _rolled_back(participants, session)
                raise
            _committed(participants, session)
        return outcomes


def _committed(participants: Sequence[TransactionParticipant], session: Session) -> None:
    for participant in participants:
        try:
            participant.after_commit(session)
        except Exception:  # the data is committed; a follower's trouble must not undo that
            log.exception("transaction participant %r failed after a commit", participant)


def _rolled_back(participants: Sequence[TransactionParticipant], session: Session) -> None:
    for participant in participants:
        try:
            participant.after_rollback(session)
        except Exception:
            log.exception("transaction participant %r failed after a rollback", participant)
