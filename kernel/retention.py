"""Retention as kernel policy: the purge pass, and the loop that runs it on the kernel clock.

``Purger.run_once`` applies the ``retention`` setting (``kernos.kernel.retention_policy``)
to every tenant, or to the tenants it is given: checkpoints of finished processes (keep the
last N; all of them past ``max_age``), the syscall journal, idempotency records, dead letters,
memory (a time to live per collection), and archives old ranges of the audit log to files with
the signed checkpoint that covers them. Database deletions are bounded jobs on the single
writer (``kernos.kernel.retention_jobs``), each carrying its own audit record; purged rows are
deleted from the store, not hidden. A finished process whose checkpoints or journal were
purged is marked, and the checkpointer and the journal refuse any later write for it.

The pass runs every ``retention.interval`` seconds of the kernel clock (a simulated clock
drives it in tests and accelerated runs), and on demand through ``POST /v1/retention/purge``
(``kernos retention run``). Nothing is deleted unless a rule is configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from kernos.kernel.checkpointer import KernosCheckpointSaver
from kernos.kernel.identity import DEFAULT_TENANT
from kernos.kernel.memory import STORED_AT
from kernos.kernel.memory_records import MAX_GET, MemoryScope
from kernos.kernel.retention_jobs import (
    CHECKPOINT_TABLES,
    Counts,
    Scope,
    count_dead_letters,
    count_idempotency,
    count_keep_last,
    count_processes,
    dead_letters_job,
    idempotency_job,
    keep_last_job,
    purge_processes_job,
)
from kernos.kernel.retention_policy import EffectiveRetention, RetentionPolicy
from kernos.kernel.storage.models import AuditCheckpointRow, AuditRow, TenantRow
from kernos.kernel.syscalls import AuditRecord

if TYPE_CHECKING:
    from kernos.kernel.identity import Principal
    from kernos.kernel.kernel import Kernel

log = logging.getLogger(__name__)

ARCHIVED_EVENT = "retention.archived"
"""Audit event of an audit-log archive pass."""
KERNEL_PRINCIPAL = "kernel"
"""Who audit records name when the kernel's own loop purges."""

KINDS = ("checkpoints", "journal", "dead_letters", "idempotency", "memory", "audit")
"""What a pass purges (or archives), in this order."""

_AUDIT = cast(Table, AuditRow.__table__)
_PAGE = 1000


@dataclass(slots=True, kw_only=True)
class PurgeReport:
    """What one pass deleted (or, dry, would delete): counts per tenant, kind and table."""

    started_at: datetime
    dry_run: bool = False
    finished_at: datetime | None = None
    tenants: dict[str, dict[str, Counts]] = field(default_factory=dict)
    archived: list[str] = field(default_factory=list)
    """Audit archive files written."""
    problems: list[str] = field(default_factory=list)
    """What could not be purged, and why (the rest of the pass went on)."""

    def add(self, tenant: str, kind: str, counts: Counts) -> None:
        """Add ``counts`` to ``tenant``'s ``kind``."""
        into = self.tenants.setdefault(tenant, {}).setdefault(kind, {})
        for name, n in counts.items():
            into[name] = into.get(name, 0) + n

    def count(self, kind: str, name: str, *, tenant: str | None = None) -> int:
        """Rows of table (or counter) ``name`` under ``kind``, of one tenant or all."""
        chosen = [tenant] if tenant is not None else list(self.tenants)
        return sum(self.tenants.get(t, {}).get(kind, {}).get(name, 0) for t in chosen)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "dry_run": self.dry_run,
            "tenants": self.tenants,
            "archived": self.archived,
            "problems": self.problems,
        }


class Purger:
    """Applies a kernel's retention policy: ``run_once`` now, or every interval in a loop."""

    def __init__(self, kernel: Kernel, *, policy: RetentionPolicy | None = None) -> None:
        self._kernel = kernel
        self.policy = policy or kernel.settings.retention
        self._saver = KernosCheckpointSaver(kernel.db)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.last_report: PurgeReport | None = None

    # -- The loop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run a pass every ``interval`` seconds of the kernel clock (when any rule is set)."""
        if self._task is None and self.policy.interval is not None and self.policy.configured:
            self._task = asyncio.create_task(self._loop(self.policy.interval), name="kernos-purge")

    async def stop(self) -> None:
        """Stop the loop; a pass in progress stops between two jobs (each one is atomic)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self, interval: float) -> None:
        clock = self._kernel.clock
        while True:
            await clock.sleep(interval)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention pass failed; the next one is in %.0f s", interval)

    # -- One pass ---------------------------------------------------------------------------

    async def run_once(
        self,
        now: datetime | None = None,
        *,
        tenants: Sequence[str] | None = None,
        dry_run: bool = False,
        by: Principal | None = None,
    ) -> PurgeReport:
        """Purge what the policy says is due at ``now`` (default: the kernel clock's now) in
        ``tenants`` (default: every tenant, and the audit archive); ``dry_run`` only counts.

        ``by`` is the operator who asked (audit records name it; default: the kernel).
        """
        async with self._lock:
            now = now or self._kernel.clock.now()
            report = PurgeReport(started_at=now, dry_run=dry_run)
            principal = by.subject if by is not None else KERNEL_PRINCIPAL
            ids = await self._tenant_ids()
            for tenant in tenants if tenants is not None else sorted(ids):
                if tenant not in ids:
                    report.problems.append(f"no tenant {tenant!r}")
                    continue
                rules = self.policy.for_tenant(tenant)
                if rules.configured:
                    await self._tenant(tenant, ids[tenant], rules, now, principal, report)
            if tenants is None and self.policy.audit.archive_after is not None:
                try:
                    await self._archive_audit(now, principal, report)
                except OSError as exc:
                    report.problems.append(f"audit archive: {exc}")
            report.finished_at = self._kernel.clock.now()
            self.last_report = report
        if not dry_run and report.tenants:
            log.info("retention pass done", extra={"purged": report.tenants})
        return report

    async def _tenant_ids(self) -> dict[str, int]:
        async with self._kernel.db.read() as session:
            rows = await session.execute(select(TenantRow.name, TenantRow.id))
            return {name: tid for name, tid in rows.all()}

    async def _tenant(
        self,
        tenant: str,
        tenant_id: int,
        rules: EffectiveRetention,
        now: datetime,
        principal: str,
        report: PurgeReport,
    ) -> None:
        def scope(seconds: float, rule: str) -> Scope:
            return Scope(
                tenant=tenant,
                tenant_id=tenant_id,
                cutoff=now - timedelta(seconds=seconds),
                now=now,
                rule=rule,
                principal=principal,
                limit=self.policy.batch_size,
            )

        sink = self._kernel.audit_sink
        cp = rules.checkpoints
        if cp.max_age is not None:
            at = scope(cp.max_age, f"max_age={cp.max_age:g}s")
            await self._drain(
                report,
                tenant,
                "checkpoints",
                purge_processes_job("checkpoints", at, sink),
                count_processes("checkpoints", at),
            )
        if cp.keep_last is not None:
            at = scope(0, f"keep_last={cp.keep_last}")
            await self._drain(
                report,
                tenant,
                "checkpoints",
                keep_last_job(at, sink, self._saver, keep=cp.keep_last),
                count_keep_last(at, keep=cp.keep_last),
            )
        if (age := rules.journal.max_age) is not None:
            at = scope(age, f"max_age={age:g}s")
            await self._drain(
                report,
                tenant,
                "journal",
                purge_processes_job("journal", at, sink),
                count_processes("journal", at),
            )
        if (age := rules.dead_letters.max_age) is not None:
            at = scope(age, f"max_age={age:g}s")
            await self._drain(
                report, tenant, "dead_letters", dead_letters_job(at, sink), count_dead_letters(at)
            )
        if (age := rules.idempotency.max_age) is not None:
            at = scope(age, f"max_age={age:g}s")
            await self._drain(
                report, tenant, "idempotency", idempotency_job(at, sink), count_idempotency(at)
            )
        if rules.memory.ttl:
            try:
                await self._memory(tenant, rules, now, principal, report)
            except Exception as exc:  # memory is another system: the rest of the pass goes on
                log.warning("memory retention of tenant %s failed: %s", tenant, exc)
                report.problems.append(f"memory of tenant {tenant!r}: {exc}")

    async def _drain(
        self,
        report: PurgeReport,
        tenant: str,
        kind: str,
        job: Callable[[Session], Counts],
        count: Callable[[Session], Counts],
    ) -> None:
        """Run ``job`` until it finds nothing more (or, dry, run ``count`` once)."""
        if report.dry_run:
            report.add(tenant, kind, await self._kernel.db.query(count))
            return
        while True:
            counts = await self._kernel.db.write(job)
            report.add(tenant, kind, counts)
            if not any(counts.values()):
                return

    # -- Memory ---------------------------------------------------------------------------

    async def _memory(
        self,
        tenant: str,
        rules: EffectiveRetention,
        now: datetime,
        principal: str,
        report: PurgeReport,
    ) -> None:
        memory = self._kernel.memory
        deleted: dict[str, int] = {}
        # Shared collections, then those private to each installed agent.
        for agent in [None, *sorted(self._kernel.catalog.agents)]:
            for name in await memory.collections(tenant, agent=agent):
                ttl = rules.memory.ttl_for(name)
                if ttl is None:
                    continue
                scope = MemoryScope(tenant=tenant, collection=name, agent=agent)
                where = {STORED_AT: {"$lt": now.timestamp() - ttl}}
                if report.dry_run:
                    n = await _count_matching(memory, scope, where)
                else:
                    n = await memory.forget(scope, where=where)
                if n:
                    deleted[f"@{agent}/{name}" if agent else name] = n
        counts = {"documents": sum(deleted.values())}
        report.add(tenant, "memory", counts)
        if report.dry_run or not deleted:
            return
        record = AuditRecord(
            event="retention.purged",
            tenant=tenant,
            principal=principal,
            kind="memory",
            target="ttl",
            args={"collections": dict(sorted(deleted.items())[:100]), **counts},
            summary=f"{counts['documents']} documents",
        )
        sink = self._kernel.audit_sink
        await self._kernel.db.write(lambda session: sink.append(session, record))

    # -- Audit archive ----------------------------------------------------------------------

    async def _archive_audit(self, now: datetime, principal: str, report: PurgeReport) -> None:
        """Write each signed checkpoint's range whose last record is older than the cutoff to
        ``audit-<id>-<first>-<last>.jsonl`` (once), the checkpoint first. Rows stay."""
        after = self.policy.audit.archive_after
        assert after is not None
        cutoff = now - timedelta(seconds=after)
        max_age = self.policy.audit.archive_max_age
        oldest = None if max_age is None else now - timedelta(seconds=max_age)
        folder = self.policy.archive_path(self._kernel.settings.home)
        async with self._kernel.db.read() as session:
            checkpoints = list(
                (await session.execute(select(AuditCheckpointRow).order_by(AuditCheckpointRow.id)))
                .scalars()
                .all()
            )
            due = []
            expired: list[Path] = []
            for cp in checkpoints:
                last_ts = await session.scalar(
                    select(_AUDIT.c.ts).where(_AUDIT.c.seq == cp.last_seq)
                )
                path = folder / archive_name(cp)
                if last_ts is None or last_ts >= cutoff:
                    continue
                if oldest is not None and last_ts < oldest:
                    if path.exists():  # past its keep: deleted, and never written again
                        expired.append(path)
                elif not path.exists():
                    due.append((cp, path))
        if report.dry_run:
            report.add(
                DEFAULT_TENANT, "audit", {"checkpoints": len(due), "pruned_archives": len(expired)}
            )
            return
        for path in expired:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        written: list[dict[str, Any]] = []
        for cp, path in due:
            records = await self._write_archive(cp, path)
            report.archived.append(str(path))
            written.append(
                {
                    "checkpoint": cp.id,
                    "first_seq": cp.first_seq,
                    "last_seq": cp.last_seq,
                    "records": records,
                    "file": path.name,
                }
            )
        counts = {
            "checkpoints": len(written),
            "records": sum(int(w["records"]) for w in written),
            "pruned_archives": len(expired),
        }
        report.add(DEFAULT_TENANT, "audit", counts)
        if not written and not expired:
            return
        record = AuditRecord(
            event=ARCHIVED_EVENT,
            tenant=DEFAULT_TENANT,
            principal=principal,
            kind="audit",
            target=str(folder),
            args={
                "archives": written[:100],
                "pruned": [p.name for p in expired[:100]],
                **counts,
            },
            summary=f"{counts['records']} records in {counts['checkpoints']} archives; "
            f"{len(expired)} old archives deleted",
        )
        sink = self._kernel.audit_sink
        await self._kernel.db.write(lambda session: sink.append(session, record))

    async def _write_archive(self, cp: AuditCheckpointRow, path: Path) -> int:
        lines = [json.dumps(checkpoint_entry(cp), sort_keys=True, separators=(",", ":"))]
        after = cp.first_seq - 1
        while after < cp.last_seq:
            async with self._kernel.db.read() as session:
                rows = (
                    await session.execute(
                        select(_AUDIT)
                        .where(_AUDIT.c.seq > after, _AUDIT.c.seq <= cp.last_seq)
                        .order_by(_AUDIT.c.seq)
                        .limit(_PAGE)
                    )
                ).all()
            if not rows:
                break
            lines.extend(_record_line(row) for row in rows)
            after = rows[-1].seq
        await asyncio.to_thread(_write_atomically, path, lines)
        return len(lines) - 1


def archive_name(cp: AuditCheckpointRow) -> str:
    """The archive file of one signed checkpoint's range."""
    return f"audit-{cp.id:06d}-{cp.first_seq}-{cp.last_seq}.jsonl"


def _iso(ts: datetime) -> str:
    # As the audit body writes times (kernos.policy.audit.canonical.iso_utc).
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def checkpoint_entry(cp: AuditCheckpointRow) -> dict[str, Any]:
    """A signed checkpoint as its witness entry (``kernos audit checkpoint --json``)."""
    return {
        "type": "kernos.audit.checkpoint",
        "v": 1,
        "id": cp.id,
        "prev_id": cp.prev_id,
        "first_seq": cp.first_seq,
        "last_seq": cp.last_seq,
        "root": cp.root,
        "head_hash": cp.head_hash,
        "created_at": _iso(cp.created_at),
        "key_fingerprint": cp.key_fingerprint,
        "public_key": cp.public_key,
        "signature": cp.signature,
    }


def _record_line(row: Any) -> str:
    data = {name: getattr(row, name) for name in row._fields}
    data["ts"] = _iso(row.ts)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _write_atomically(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


async def _count_matching(memory: Any, scope: MemoryScope, where: dict[str, Any]) -> int:
    total, offset = 0, 0
    while True:
        page = await memory.get(scope, where=where, limit=MAX_GET, offset=offset)
        total += len(page)
        if len(page) < MAX_GET:
            return total
        offset += len(page)


async def checkpoint_storage(kernel: Kernel, thread_ids: Sequence[str] | None = None) -> Counts:
    """Rows and bytes (checkpoint, blob and write payloads) of the checkpoint tables, for
    ``thread_ids`` or all threads: what retention measures and benchmarks report."""
    found: Counts = {}
    total = 0
    async with kernel.db.read() as session:
        for table in CHECKPOINT_TABLES:
            payload = table.c.checkpoint if table.name == "checkpoints" else table.c.blob
            query = select(func.count(), func.coalesce(func.sum(func.length(payload)), 0))
            if thread_ids is not None:
                query = query.where(table.c.thread_id.in_(list(thread_ids)))
            rows, size = (await session.execute(query.select_from(table))).one()
            found[f"{table.name}_rows"] = int(rows)
            total += int(size)
    found["bytes"] = total
    return found


__all__ = [
    "ARCHIVED_EVENT",
    "KERNEL_PRINCIPAL",
    "KINDS",
    "STORED_AT",
    "PurgeReport",
    "Purger",
    "archive_name",
    "checkpoint_entry",
    "checkpoint_storage",
]
