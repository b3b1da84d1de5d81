"""Run every Kernos benchmark and print a Markdown report: ``make bench``.

Each benchmark reports medians and a ratio against a baseline measured in the same run
(these machines are noisy; absolute numbers move, ratios much less).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _time_command(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def bench_cli_startup(runs: int = 15) -> list[str]:
    """`kernos --help` and `--version` against a bare interpreter start."""
    baseline = _time_command([sys.executable, "-c", "pass"], runs)
    help_s = _time_command([str(BIN / "kernos"), "--help"], runs)
    version_s = _time_command([str(BIN / "kernos"), "--version"], runs)
    return [
        f"## CLI start-up (median of {runs})",
        "",
        "| command | median | vs `python -c pass` |",
        "|---|---|---|",
        f"| `python -c pass` | {baseline * 1000:.0f} ms | 1.0× |",
        f"| `kernos --version` | {version_s * 1000:.0f} ms | {version_s / baseline:.1f}× |",
        f"| `kernos --help` | {help_s * 1000:.0f} ms | {help_s / baseline:.1f}× |",
        "",
        "Target: `kernos --help` ≤ 0.5 s.",
        "",
    ]


async def _writes(concurrent: bool, n: int, home: Path) -> float:
    from sqlalchemy.ext.asyncio import AsyncSession

    from kernos.kernel.clock import SystemClock
    from kernos.kernel.settings import load_settings
    from kernos.kernel.storage import migrate
    from kernos.kernel.storage.database import Database
    from kernos.kernel.storage.models import TenantRow

    settings = load_settings(home=home)
    home.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.db_url)
    db = Database(settings)
    await db.start()
    now = SystemClock().now()

    def job(i: int):
        async def write(session: AsyncSession) -> None:
            session.add(TenantRow(name=f"t{i}", display_name="", created_at=now, disabled=False))

        return write

    started = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(db.write(job(i)) for i in range(n)))
    else:
        for i in range(n):
            await db.write(job(i))
    elapsed = time.perf_counter() - started
    await db.stop()
    return n / elapsed


def bench_group_commit(n: int = 2000, reps: int = 3) -> list[str]:
    """Writes/s through the single writer: many callers at once vs one caller at a time."""
    results: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(reps):
        for concurrent in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                results[concurrent].append(asyncio.run(_writes(concurrent, n, Path(tmp))))
    seq = statistics.median(results[False])
    par = statistics.median(results[True])
    return [
        f"## Single writer, group commit (SQLite WAL, synchronous=FULL, {n} inserts, "
        f"median of {reps})",
        "",
        "| callers | writes/s | ratio |",
        "|---|---|---|",
        f"| one at a time (a commit per write) | {seq:,.0f} | 1.0× |",
        f"| {n} at once (group commit) | {par:,.0f} | {par / seq:.1f}× |",
        "",
    ]


def main() -> None:
    header = [
        "# Benchmark run",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}",
        "",
    ]
    print("\n".join(header + bench_cli_startup() + bench_group_commit()))


if __name__ == "__main__":
    main()
