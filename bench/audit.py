"""The hash-chained audit log: append throughput through the real writer, and verify speed.

    python bench/audit.py [--quick]

Append: a kernel on a fresh SQLite home (default settings: WAL, ``synchronous=FULL``) with
``HashChainAuditSink``; 256 concurrent writers each submit write jobs of 3 records in a loop
(a governed call appends 2-3) until ≥ 100,000 records (20,000 with ``--quick``) are committed
through the single writer's group commits. Records/s over the whole run, median of 3, against
the kernel's ``PlainAuditSink`` (no hashes) the same way in the same run.

Verify: the chained log just written, verified (every hash, every column against its body)
offline (``verify_offline``, its own read-only connection) and online (``AuditLog.verify``
of the running kernel); records/s, median of 3.

Targets (the policy issue): append ≥ 20,000 records/s sustained; verify ≥ 50,000 records/s.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

TARGET_APPEND = 20_000
TARGET_VERIFY = 50_000
WRITERS = 256
PER_JOB = 3
RUNS = 3


def record(i: int) -> Any:
    from kernos.kernel.syscalls import AuditRecord

    return AuditRecord(
        event="syscall.intent",
        tenant="default",
        principal="default/admin",
        pid=i % 1000,
        syscall_key=f"{i % 1000}/call:{i}/tool-call-{i}",
        kind="tool.call",
        target="echo",
        decision="allow",
        rule="local-admin",
        args={"x": i, "city": "Zürich"},
        trace_id="0af7651916cd43dd8448eb211c80319c",
        correlation_id="3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    )


async def append_run(chained: bool, total: int, home: Path) -> tuple[float, Any]:
    """Records/s appending ``total`` records; returns the (still running) kernel too."""
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.pluginmanager import PluginManager
    from kernos.kernel.settings import load_settings
    from kernos.policy.audit import HashChainAuditSink

    kernel = Kernel(load_settings(home=home), plugins=PluginManager(entry_points=False))
    if chained:
        kernel.audit_sink = HashChainAuditSink(kernel.db, kernel.clock)
    await kernel.start()
    sink = kernel.audit_sink
    records = [record(i) for i in range(PER_JOB)]
    jobs_each = total // (WRITERS * PER_JOB) + 1

    def job(session: Any) -> None:
        for rec in records:
            sink.append(session, rec)

    async def writer() -> None:
        for _ in range(jobs_each):
            await kernel.db.write(job)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    elapsed = time.perf_counter() - started
    return WRITERS * jobs_each * PER_JOB / elapsed, kernel


async def measure(quick: bool) -> list[str]:
    from kernos.policy.audit import AuditLog, verify_offline

    for key in list(os.environ):
        if key.startswith("KERNOS_"):
            del os.environ[key]
    total = 20_000 if quick else 100_000
    plain: list[float] = []
    chained: list[float] = []
    offline: list[float] = []
    online: list[float] = []
    records = 0
    with tempfile.TemporaryDirectory(prefix="kernos-bench-") as tmp:
        for run in range(RUNS):
            rate, kernel = await append_run(False, total, Path(tmp) / f"plain{run}")
            await kernel.stop()
            plain.append(rate)
            rate, kernel = await append_run(True, total, Path(tmp) / f"chain{run}")
            chained.append(rate)
            try:
                started = time.perf_counter()
                result = await AuditLog.for_kernel(kernel).verify()
                online.append(result.records / (time.perf_counter() - started))
                assert result.ok, result
            finally:
                await kernel.stop()
            started = time.perf_counter()
            result = verify_offline(kernel.settings.db_url)
            offline.append(result.records / (time.perf_counter() - started))
            assert result.ok, result
            records = result.records
    append_median = benchlib.median(chained)
    plain_median = benchlib.median(plain)
    offline_median = benchlib.median(offline)
    online_median = benchlib.median(online)
    return [
        f"## Audit log: append and verify (median of {RUNS}, {records:,} records per run)",
        "",
        *benchlib.table(
            ["measure", "result", "baseline (same run)", "target"],
            [
                [
                    f"append, {WRITERS} concurrent writers × jobs of {PER_JOB} records",
                    f"{append_median:,.0f} records/s",
                    f"PlainAuditSink {plain_median:,.0f} records/s "
                    f"({append_median / plain_median:.2f}×)",
                    f"≥ {TARGET_APPEND:,}/s: {benchlib.met(append_median >= TARGET_APPEND)}",
                ],
                [
                    "verify offline (read-only connection)",
                    f"{offline_median:,.0f} records/s",
                    "—",
                    f"≥ {TARGET_VERIFY:,}/s: {benchlib.met(offline_median >= TARGET_VERIFY)}",
                ],
                [
                    "verify online (running kernel)",
                    f"{online_median:,.0f} records/s",
                    "—",
                    f"≥ {TARGET_VERIFY:,}/s: {benchlib.met(online_median >= TARGET_VERIFY)}",
                ],
            ],
        ),
        "",
        f"Runs: chained {', '.join(f'{r:,.0f}' for r in chained)}; plain "
        f"{', '.join(f'{r:,.0f}' for r in plain)}; verify offline "
        f"{', '.join(f'{r:,.0f}' for r in offline)}; online "
        f"{', '.join(f'{r:,.0f}' for r in online)} records/s.",
        "",
    ]


def main() -> None:
    args = benchlib.parse_args(__doc__ or "")
    lines = asyncio.run(measure(args.quick))
    benchlib.emit([benchlib.machine_line(), "", *lines])


if __name__ == "__main__":
    sys.exit(main())
