"""A durable step on the Kernos checkpointer vs LangGraph's own SQLite savers.

    python bench/durable_step.py [--quick]

The same 3-node graph (each node a tiny state update, no tools), invoked on a fresh thread
each time with ``durability="sync"`` (every checkpoint written before the next step runs):

* no checkpointer (what LangGraph itself costs, for reference);
* LangGraph's ``SqliteSaver`` (sync graph, ``invoke``) and ``AsyncSqliteSaver`` (``ainvoke``)
  on a file with the kernel's SQLite settings: WAL, ``synchronous=FULL``;
* ``KernosCheckpointSaver(kernel.db)`` driven directly with ``graph.ainvoke`` (the kernel's
  single writer, group commit);
* the same graph as an agent run by a kernel process: ``spawn`` → ``wait`` until done, which
  adds the process table (accepted, running, done), the step counter and the audit records.

A "step" is a checkpoint written (counted, not assumed: LangGraph 1.2 writes 5 per
invocation of this graph, the input and START included); per step = per invocation / that.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypedDict

import benchlib

from kernos.kernel.hookspecs import hookimpl

TARGET_RATIO = 1.2  # Kernos per step at most 1.2 times SqliteSaver's


class Counter(TypedDict, total=False):
    n: int
    trail: str


def build(checkpointer: Any = None, *, sync: bool = False) -> Any:
    """The 3-node graph; ``sync`` builds plain functions (``SqliteSaver`` has no async API)."""
    from langgraph.graph import END, START, StateGraph

    def node(name: str) -> Any:
        if sync:

            def step(state: Counter) -> Counter:
                return {"n": state.get("n", 0) + 1, "trail": name}

            return step

        async def astep(state: Counter) -> Counter:
            return {"n": state.get("n", 0) + 1, "trail": name}

        return astep

    graph = StateGraph(Counter)
    for name in ("a", "b", "c"):
        graph.add_node(name, node(name))
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph.compile(checkpointer=checkpointer)


class BenchPlugin:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        from kernos.kernel.catalog import AgentSpec

        register(AgentSpec(name="three", description="Three tiny steps.", build=lambda b: build()))


def _config() -> dict[str, Any]:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


async def per_invocation(run: Callable[[], Awaitable[Any]], count: int) -> float:
    """Seconds per invocation over ``count`` invocations in a row."""
    started = time.perf_counter()
    for _ in range(count):
        await run()
    return (time.perf_counter() - started) / count


def sqlite_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def pragmas(conn: sqlite3.Connection) -> str:
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    return f"journal_mode={mode}, synchronous={ {1: 'NORMAL', 2: 'FULL'}.get(sync, sync) }"


async def measure(quick: bool) -> list[str]:
    import aiosqlite
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from kernos.kernel.checkpointer import KernosCheckpointSaver

    count = 20 if quick else 100
    reps = 2 if quick else 7
    samples: dict[str, list[float]] = {}
    checks: list[str] = []
    steps_per_invocation = 4

    with tempfile.TemporaryDirectory(prefix="kernos-bench-") as tmp:
        sync_conn = sqlite_connection(Path(tmp) / "sync.sqlite")
        sync_saver = SqliteSaver(sync_conn)
        sync_saver.setup()
        async_conn = await aiosqlite.connect(Path(tmp) / "async.sqlite")
        await async_conn.execute("PRAGMA journal_mode=WAL")
        await async_conn.execute("PRAGMA synchronous=FULL")
        async_saver = AsyncSqliteSaver(async_conn)
        await async_saver.setup()
        checks.append(f"`SqliteSaver`: {pragmas(sync_conn)}")
        async with async_conn.execute("PRAGMA synchronous") as cur:
            row = await cur.fetchone()
        checks.append(f"`AsyncSqliteSaver`: synchronous={ {2: 'FULL'}.get(row[0], row[0]) }")

        async with benchlib.temp_kernel(BenchPlugin()) as kernel:
            kernos_saver = KernosCheckpointSaver(kernel.db)
            graphs = {
                "none": build(),
                "sqlite": build(sync_saver, sync=True),
                "async_sqlite": build(async_saver),
                "kernos": build(kernos_saver),
            }
            admin = benchlib.admin()

            async def run_none() -> None:
                await graphs["none"].ainvoke({"n": 0})

            async def run_sqlite() -> None:
                graphs["sqlite"].invoke({"n": 0}, _config(), durability="sync")

            async def run_async_sqlite() -> None:
                await graphs["async_sqlite"].ainvoke({"n": 0}, _config(), durability="sync")

            async def run_kernos() -> None:
                await graphs["kernos"].ainvoke({"n": 0}, _config(), durability="sync")

            async def run_process() -> None:
                info = await kernel.processes.spawn("three", {"n": 0}, principal=admin)
                done = await kernel.processes.wait(info.pid, timeout=60)
                if done.state.value != "done":
                    raise RuntimeError(f"process {info.pid}: {done.state.value} {done.error}")

            runs = {
                "none": run_none,
                "sqlite": run_sqlite,
                "async_sqlite": run_async_sqlite,
                "kernos": run_kernos,
                "process": run_process,
            }
            for run in runs.values():  # warm-up
                await per_invocation(run, 3)
            # Count the checkpoints one invocation writes (the definition of a step here).
            config = _config()
            await graphs["kernos"].ainvoke({"n": 0}, config, durability="sync")
            steps_per_invocation = len([c async for c in kernos_saver.alist(config)])
            sync_config = _config()
            graphs["sqlite"].invoke({"n": 0}, sync_config, durability="sync")
            sqlite_steps = len(list(sync_saver.list(sync_config)))
            checks.append(
                f"checkpoints per invocation: Kernos {steps_per_invocation}, "
                f"SqliteSaver {sqlite_steps}"
            )
            for _ in range(reps):  # interleaved, so drift hits every variant alike
                for name, run in runs.items():
                    samples.setdefault(name, []).append(await per_invocation(run, count))
            commits = kernel.db.writer_stats
        await async_conn.close()
        sync_conn.close()

    med = {name: benchlib.median(values) for name, values in samples.items()}
    base = med["sqlite"]

    def row(label: str, name: str) -> list[str]:
        seconds = med[name]
        return [
            label,
            f"{seconds * 1000:.2f} ms",
            f"{seconds / steps_per_invocation * 1000:.2f} ms",
            f"{seconds / base:.2f}×",
        ]

    ratio_direct = med["kernos"] / base
    ratio_process = med["process"] / base
    return [
        f'## Durable step: 3-node graph, `durability="sync"` ({count} invocations per '
        f"sample, median of {reps})",
        "",
        *benchlib.table(
            ["checkpointer", "per invocation", "per step", "vs SqliteSaver"],
            [
                row("none (LangGraph alone)", "none"),
                row("LangGraph `SqliteSaver` (file)", "sqlite"),
                row("LangGraph `AsyncSqliteSaver` (file)", "async_sqlite"),
                row("`KernosCheckpointSaver`, `graph.ainvoke`", "kernos"),
                row("Kernos process (spawn → done)", "process"),
            ],
        ),
        "",
        "SQLite settings: " + "; ".join(checks) + "; the kernel's file: WAL, synchronous=FULL "
        f"(defaults). Kernel writer: {commits.writes:,} writes in {commits.commits:,} commits.",
        "",
        f"Target Kernos ≤ {TARGET_RATIO}× `SqliteSaver` per step: checkpointer "
        f"{benchlib.met(ratio_direct <= TARGET_RATIO)} ({ratio_direct:.2f}×); "
        f"full process {benchlib.met(ratio_process <= TARGET_RATIO)} ({ratio_process:.2f}×). "
        f"Against `AsyncSqliteSaver`: {med['kernos'] / med['async_sqlite']:.2f}× "
        f"(checkpointer), {med['process'] / med['async_sqlite']:.2f}× (process).",
        "",
    ]


def main() -> None:
    args = benchlib.parse_args(__doc__ or "")
    benchlib.require("langgraph.checkpoint.sqlite", "langgraph-checkpoint-sqlite")
    lines = asyncio.run(measure(args.quick))
    benchlib.emit([benchlib.machine_line(), "", *lines])


if __name__ == "__main__":
    main()
