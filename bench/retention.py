"""Checkpoint storage of a long finished process, before and after retention prunes it.

    python bench/retention.py [--quick]

One kernel process runs a 500-step agent (``--quick``: 100): each step adds one item of
about 70 bytes to a list in its state, so every checkpoint's list is one longer — the shape
of a message history. Then a retention pass with ``checkpoints.keep_last = 1`` runs, and the
same process is measured again: rows per checkpoint table, payload bytes (checkpoint, blob
and write payloads summed with ``length()``), and the SQLite file after ``VACUUM`` (the kernel
stopped). The baseline is the same process before pruning, in the same run.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

import benchlib

from kernos.kernel.hookspecs import hookimpl


class State(TypedDict, total=False):
    n: int
    goal: int
    trail: list[str]


def build(_build: Any) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def step(state: State) -> State:
        n = state.get("n", 0) + 1
        return {"n": n, "trail": [*state.get("trail", []), f"step {n} " + "x" * 60]}

    graph = StateGraph(State)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", lambda s: "step" if s["n"] < s["goal"] else END)
    return graph.compile()


class BenchPlugin:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        from kernos.kernel.catalog import AgentSpec

        register(AgentSpec(name="long", description="Many steps.", build=build))


def file_size(home: Path) -> int:
    """Bytes of the SQLite database after VACUUM (no kernel running)."""
    path = home / "kernos.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("VACUUM")
        page_count = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    return int(page_count * page_size)


async def kernel_on(home: Path, **overrides: Any) -> Any:
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.pluginmanager import PluginManager
    from kernos.kernel.settings import load_settings

    plugins = PluginManager(entry_points=False)
    plugins.add(BenchPlugin(), name="bench-agents")
    kernel = Kernel(load_settings(home=home, **overrides), plugins=plugins)
    await kernel.start()
    await benchlib.load_policy(kernel)
    return kernel


async def measure(quick: bool) -> list[str]:
    from sqlalchemy import func, select

    from kernos.kernel.retention import Purger, checkpoint_storage
    from kernos.kernel.retention_policy import RetentionPolicy
    from kernos.kernel.storage.models import AuditRow

    steps = 100 if quick else 500
    for key in list(os.environ):
        if key.startswith("KERNOS_"):
            del os.environ[key]
    with tempfile.TemporaryDirectory(prefix="kernos-bench-") as tmp:
        home = Path(tmp) / "home"
        kernel = await kernel_on(home)
        started = time.perf_counter()
        info = await kernel.processes.spawn("long", {"goal": steps}, principal=benchlib.admin())
        done = await kernel.processes.wait(info.pid, timeout=600)
        run_seconds = time.perf_counter() - started
        assert done.state == "done", done.error
        before = await checkpoint_storage(kernel, [info.thread_id])
        await kernel.stop()
        size_before = file_size(home)

        kernel = await kernel_on(home)
        purger = Purger(kernel, policy=RetentionPolicy(interval=None, checkpoints={"keep_last": 1}))
        started = time.perf_counter()
        report = await purger.run_once()
        purge_seconds = time.perf_counter() - started
        after = await checkpoint_storage(kernel, [info.thread_id])
        async with kernel.db.read() as session:
            jobs = int(
                await session.scalar(
                    select(func.count()).where(AuditRow.event == "retention.purged")
                )
                or 0
            )
        await kernel.stop()
        size_after = file_size(home)

    def ratio(key: str) -> str:
        return f"{after[key] / before[key]:.3f}" if before[key] else "-"

    rows = [
        (name, before[key], after[key], ratio(key))
        for name, key in (
            ("checkpoints rows", "checkpoints_rows"),
            ("checkpoint_blobs rows", "checkpoint_blobs_rows"),
            ("checkpoint_writes rows", "checkpoint_writes_rows"),
            ("payload bytes", "bytes"),
        )
    ]
    rows.append(
        (
            "SQLite file after VACUUM (bytes)",
            size_before,
            size_after,
            f"{size_after / size_before:.3f}",
        )
    )
    deleted = sum(
        n for kinds in report.tenants.values() for c in kinds.values() for n in c.values()
    )
    return [
        f"## Retention: checkpoint storage of a {steps}-step process, before and after "
        "`keep_last = 1`",
        "",
        *benchlib.table(["", "before", "after", "after / before"], rows),
        "",
        f"The process ran {steps} steps in {run_seconds:.1f} s; the purge pass deleted "
        f"{deleted} rows in {purge_seconds:.2f} s, in {jobs} write jobs of at most "
        "about 1,000 rows (one audit record each).",
    ]


def main() -> None:
    """Run the benchmark and print its Markdown section."""
    args = benchlib.parse_args(__doc__ or "")
    lines = asyncio.run(measure(args.quick))
    benchlib.emit([benchlib.machine_line(), "", *lines])


if __name__ == "__main__":
    main()
