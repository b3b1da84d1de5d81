"""Spawning many processes that each end up waiting for a human.

    python bench/spawn.py [--quick]

10,000 processes (1,000 with ``--quick``) of an agent whose single node calls
``ask_human(...)``: each runs one step, records an approval and waits in ``waiting(human)``.
All ``spawn()`` calls are issued at once; "spawns/s" is the count over the time until every
``spawn()`` has returned (accepted and committed: the single writer groups them). Settling is
the time until the process table shows every process waiting (polled every 0.1 s with a
``COUNT``), the approvals checked too. Peak RSS is ``ru_maxrss`` of this process, against the
RSS of the started, idle kernel measured just before (the baseline in the same run).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypedDict

import benchlib

from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.processes import SETTLED

TARGET_SPAWNS = 500.0  # spawns/s
TARGET_RSS_MIB = 1024.0


class AskState(TypedDict, total=False):
    answer: Any


def build_asker() -> Any:
    from langgraph.graph import END, START, StateGraph

    from kernos.kernel.governed import ask_human

    async def ask(state: AskState) -> AskState:
        return {"answer": await ask_human("Dispatch the truck?")}

    graph = StateGraph(AskState)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return graph.compile()


class BenchPlugin:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        from kernos.kernel.catalog import AgentSpec

        register(AgentSpec(name="asker", description="Asks once.", build=lambda b: build_asker()))


async def _counts(kernel: Any) -> tuple[int, int, int]:
    """(waiting, finished-or-failed, pending approvals) from the tables."""
    from sqlalchemy import func, select

    from kernos.kernel.storage.models import ApprovalRow, ProcessRow

    async with kernel.db.read() as session:
        waiting = await session.scalar(
            select(func.count()).select_from(ProcessRow).where(ProcessRow.state == "waiting")
        )
        ended = await session.scalar(
            select(func.count())
            .select_from(ProcessRow)
            .where(ProcessRow.state.in_(["done", "failed", "killed"]))
        )
        approvals = await session.scalar(
            select(func.count()).select_from(ApprovalRow).where(ApprovalRow.status == "pending")
        )
    return int(waiting or 0), int(ended or 0), int(approvals or 0)


async def measure(quick: bool, count: int | None) -> list[str]:
    total = count or (1_000 if quick else 10_000)
    settle_limit = 1200.0
    async with benchlib.temp_kernel(BenchPlugin()) as kernel:
        admin = benchlib.admin()
        # Warm-up: one process (compiles the graph, opens the connections).
        warm = await kernel.processes.spawn("asker", {}, principal=admin)
        await kernel.processes.wait(warm.pid, timeout=60, until=SETTLED)
        idle_rss = benchlib.peak_rss_mib()
        before = kernel.db.writer_stats
        w0, c0 = before.writes, before.commits
        cpu0 = time.process_time()

        started = time.perf_counter()
        infos = await asyncio.gather(
            *(kernel.processes.spawn("asker", {}, principal=admin) for _ in range(total)),
            return_exceptions=True,
        )
        spawned_s = time.perf_counter() - started
        failed_spawns = [i for i in infos if isinstance(i, BaseException)]
        stats = kernel.db.writer_stats
        spawn_writes, spawn_commits = stats.writes - w0, stats.commits - c0

        expected = total + 1 - len(failed_spawns)
        waiting = ended = approvals = 0
        while time.perf_counter() - started < settle_limit:
            waiting, ended, approvals = await _counts(kernel)
            if waiting + ended >= expected:
                break
            await asyncio.sleep(0.1)
        settled_s = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        peak_rss = benchlib.peak_rss_mib()
        stats = kernel.db.writer_stats
        writes, commits = stats.writes - w0, stats.commits - c0

    rate = (total - len(failed_spawns)) / spawned_s
    return [
        f"## Spawn: {total:,} processes, each waiting for a human (`ask_human`)",
        "",
        *benchlib.table(
            ["measure", "value", "target"],
            [
                [
                    f"all {total:,} `spawn()` calls returned (accepted, committed)",
                    f"{spawned_s:.2f} s = **{rate:,.0f} spawns/s** "
                    f"({spawn_writes:,} writes in {spawn_commits:,} commits meanwhile)",
                    f"≥ {TARGET_SPAWNS:.0f}/s: {benchlib.met(rate >= TARGET_SPAWNS)}",
                ],
                [
                    "until all settled (waiting with an approval record)",
                    f"{settled_s:.1f} s = {expected / settled_s:,.0f} processes/s; "
                    f"{cpu / expected * 1000:.1f} ms CPU per process",
                    "—",
                ],
                [
                    "settled: waiting / ended / pending approvals / failed spawns",
                    f"{waiting:,} / {ended:,} / {approvals:,} / {len(failed_spawns):,}",
                    f"all {expected:,} waiting: {benchlib.met(waiting == expected)}",
                ],
                [
                    "peak RSS (`ru_maxrss`)",
                    f"{peak_rss:,.0f} MiB (idle kernel before: {idle_rss:,.0f} MiB, "
                    f"{peak_rss / idle_rss:.1f}×)",
                    f"≤ 1 GiB: {benchlib.met(peak_rss <= TARGET_RSS_MIB)}",
                ],
                [
                    "writer, spawn to settled",
                    f"{writes:,} writes in {commits:,} commits "
                    f"({writes / max(commits, 1):.1f} per commit, "
                    f"{writes / expected:.1f} writes per process)",
                    "—",
                ],
            ],
        ),
        "",
    ]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 processes: a smoke run")
    parser.add_argument("--count", type=int, default=None, help="number of processes")
    args = parser.parse_args()
    lines = asyncio.run(measure(args.quick, args.count))
    benchlib.emit([benchlib.machine_line(), "", *lines])


if __name__ == "__main__":
    main()
