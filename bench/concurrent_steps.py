"""Many processes stepping at once on SQLite: lock errors and steps/s.

    python bench/concurrent_steps.py [--quick]

100 processes (20 with ``--quick``) of an agent with 20 tiny nodes, all spawned at once and
run to completion by the kernel (one asyncio task each, a checkpoint committed at every step
through the single writer). Counted: "database is locked" errors (in failed processes'
errors, in exceptions, and in any log record), failed processes, and node steps/s. Baseline
in the same run: the same graphs run concurrently with ``ainvoke(durability="sync")`` on one
LangGraph ``AsyncSqliteSaver`` (one aiosqlite connection, one file, WAL, ``synchronous=FULL``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

import benchlib

from kernos.kernel.hookspecs import hookimpl

NODES = 20
STEPS_RUN = [0]  # node executions, counted by the nodes themselves


class Chain(TypedDict, total=False):
    n: int


def build_chain(checkpointer: Any = None) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def step(state: Chain) -> Chain:
        STEPS_RUN[0] += 1
        return {"n": state.get("n", 0) + 1}

    graph = StateGraph(Chain)
    names = [f"s{i:02d}" for i in range(NODES)]
    for name in names:
        graph.add_node(name, step)
    graph.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        graph.add_edge(a, b)
    graph.add_edge(names[-1], END)
    return graph.compile(checkpointer=checkpointer)


class BenchPlugin:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        from kernos.kernel.catalog import AgentSpec

        register(
            AgentSpec(name="chain", description="Twenty tiny steps.", build=lambda b: build_chain())
        )


class LockedCounter(logging.Handler):
    """Counts log records that mention a locked database (the writer logs failed commits)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.locked = 0
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + str(record.exc_info[1])
        if record.levelno >= logging.ERROR:
            self.errors += 1
        if "database is locked" in text:
            self.locked += 1


def _locked(error: Any) -> bool:
    return "database is locked" in str(error)


async def run_kernel(processes: int) -> dict[str, Any]:
    from kernos.kernel.processes import TERMINAL

    async with benchlib.temp_kernel(BenchPlugin()) as kernel:
        admin = benchlib.admin()
        warm = await kernel.processes.spawn("chain", {"n": 0}, principal=admin)
        await kernel.processes.wait(warm.pid, timeout=60)
        before = kernel.db.writer_stats
        w0, c0 = before.writes, before.commits
        STEPS_RUN[0] = 0
        started = time.perf_counter()
        infos = await asyncio.gather(
            *(kernel.processes.spawn("chain", {"n": 0}, principal=admin) for _ in range(processes)),
            return_exceptions=True,
        )
        spawned = [i for i in infos if not isinstance(i, BaseException)]
        finals = await asyncio.gather(
            *(kernel.processes.wait(i.pid, timeout=600, until=TERMINAL) for i in spawned),
            return_exceptions=True,
        )
        elapsed = time.perf_counter() - started
        stats = kernel.db.writer_stats
        problems = [i for i in infos if isinstance(i, BaseException)]
        problems += [f for f in finals if isinstance(f, BaseException)]
        failed = [f for f in finals if not isinstance(f, BaseException) and f.state.value != "done"]
        return {
            "seconds": elapsed,
            "steps": STEPS_RUN[0],
            "checkpoints": sum(f.steps for f in finals if not isinstance(f, BaseException)),
            "failed": len(failed) + len(problems),
            "locked": sum(_locked(f.error) for f in failed) + sum(_locked(p) for p in problems),
            "writes": stats.writes - w0,
            "commits": stats.commits - c0,
        }


async def run_async_sqlite(processes: int, path: Path) -> dict[str, Any]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    conn = await aiosqlite.connect(path)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        graph = build_chain(saver)

        async def one() -> Any:
            config = {"configurable": {"thread_id": str(uuid.uuid4())}, "recursion_limit": 1000}
            return await graph.ainvoke({"n": 0}, config, durability="sync")

        await one()  # warm-up
        STEPS_RUN[0] = 0
        started = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(processes)), return_exceptions=True)
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    problems = [r for r in results if isinstance(r, BaseException)]
    return {
        "seconds": elapsed,
        "steps": STEPS_RUN[0],
        "failed": len(problems),
        "locked": sum(_locked(p) for p in problems),
    }


async def measure(quick: bool) -> list[str]:
    processes = 20 if quick else 100
    reps = 1 if quick else 3
    handler = LockedCounter()
    logging.getLogger().addHandler(handler)
    kernos_runs: list[dict[str, Any]] = []
    baseline_runs: list[dict[str, Any]] = []
    try:
        for rep in range(reps):
            kernos_runs.append(await run_kernel(processes))
            with tempfile.TemporaryDirectory(prefix="kernos-bench-") as tmp:
                baseline_runs.append(
                    await run_async_sqlite(processes, Path(tmp) / f"async-{rep}.sqlite")
                )
    finally:
        logging.getLogger().removeHandler(handler)

    def rate(run: dict[str, Any]) -> float:
        return run["steps"] / run["seconds"]

    k_rate = benchlib.median(rate(r) for r in kernos_runs)
    b_rate = benchlib.median(rate(r) for r in baseline_runs)
    k_locked = sum(r["locked"] for r in kernos_runs) + handler.locked
    k_failed = sum(r["failed"] for r in kernos_runs)
    b_locked = sum(r["locked"] for r in baseline_runs)
    b_failed = sum(r["failed"] for r in baseline_runs)
    mid = sorted(kernos_runs, key=rate)[len(kernos_runs) // 2]
    b_mid = sorted(baseline_runs, key=rate)[len(baseline_runs) // 2]
    return [
        f"## Concurrent steps: {processes} processes × {NODES} nodes at once on SQLite "
        f"(median of {reps})",
        "",
        *benchlib.table(
            [
                "runner",
                "wall",
                "node steps/s",
                "vs AsyncSqliteSaver",
                '"database is locked"',
                "failed",
            ],
            [
                [
                    f"`AsyncSqliteSaver` (one connection), `ainvoke` × {processes} via `gather`",
                    f"{b_mid['seconds']:.2f} s",
                    f"{b_rate:,.0f}",
                    "1.0×",
                    f"{b_locked}",
                    f"{b_failed}",
                ],
                [
                    f"Kernos: {processes} processes (spawn → done)",
                    f"{mid['seconds']:.2f} s",
                    f"{k_rate:,.0f}",
                    f"{k_rate / b_rate:.2f}×",
                    f"{k_locked}",
                    f"{k_failed}",
                ],
            ],
        ),
        "",
        f"Kernos writer in the median run: {mid['writes']:,} writes in {mid['commits']:,} "
        f"commits ({mid['writes'] / max(mid['commits'], 1):.1f} per commit); "
        f"{mid['checkpoints']:,} root checkpoints counted on the process rows. "
        f"Error-level log records during all runs: {handler.errors}.",
        "",
        f'Target zero "database is locked" errors and zero failed processes: '
        f"{benchlib.met(k_locked == 0 and k_failed == 0)}.",
        "",
    ]


def main() -> None:
    args = benchlib.parse_args(__doc__ or "")
    benchlib.require("langgraph.checkpoint.sqlite", "langgraph-checkpoint-sqlite")
    lines = asyncio.run(measure(args.quick))
    benchlib.emit([benchlib.machine_line(), "", *lines])


if __name__ == "__main__":
    main()
