"""Run every Kernos benchmark and print a Markdown report: ``make bench``.

Each benchmark reports medians and a ratio against a baseline measured in the same run
(these machines are noisy; absolute numbers move, ratios much less). Besides the two below,
it runs the kernel-core scripts, each in its own interpreter (so peak RSS is its own):
``syscall_overhead.py``, ``durable_step.py``, ``spawn.py`` and ``concurrent_steps.py``.
Each can also be run alone: ``python bench/NAME.py [--quick]``.

``python bench/run.py --quick`` is the smoke run (every benchmark at small sizes, a few
minutes): targets are reported "met" / "not met", never asserted; it fails only if a script
crashes.
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
HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "syscall_overhead",
    "durable_step",
    "spawn",
    "concurrent_steps",
    "policy",
    "audit",
    "redaction",
    "ingest",
    "memory",
    "api_load",
    "scheduler",
)


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
    from sqlalchemy.orm import Session

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
        def write(session: Session) -> None:
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


def run_script(name: str, quick: bool) -> tuple[list[str], bool]:
    """Run ``bench/NAME.py`` and return its section (without its own machine line)."""
    argv = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if quick else [])]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-15:]
        return [f"## {name}: FAILED (exit {done.returncode})", "", "```", *tail, "```", ""], False
    lines = [line for line in done.stdout.splitlines() if not line.startswith("Machine:")]
    while lines and not lines[0].strip():
        lines.pop(0)
    return [*lines, ""], True


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    header = [
        "# Benchmark run" + (" (--quick: smoke sizes, not numbers to quote)" if quick else ""),
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}",
        "",
    ]
    print("\n".join(header), flush=True)
    print("\n".join(bench_cli_startup(5 if quick else 15)), flush=True)
    print("\n".join(bench_group_commit(500 if quick else 2000, 1 if quick else 3)), flush=True)
    ok = True
    for name in SCRIPTS:
        lines, passed = run_script(name, quick)
        ok = ok and passed
        print("\n".join(lines), flush=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
