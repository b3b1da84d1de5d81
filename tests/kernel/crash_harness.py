"""A kernel in a subprocess, for crash tests: ``python crash_harness.py MODE EFFECTS_DB [N]``.

Settings come from the environment (``KERNOS_HOME``, ``KERNOS_DATABASE_URL``). The agents'
tool records its effects in ``EFFECTS_DB``, a separate SQLite file standing for the outside
system: ``effects`` holds one row per idempotency key (the receiving system deduplicates),
``attempts`` one row per call. Modes:

* ``spawn N``: spawn N three-step workers and one process that asks a human, then keep running
  until killed.
* ``crash-in-tool``: spawn one worker whose first tool call kills this process right after its
  effect landed, before returning.
* ``crash-after-accept``: spawn one worker and kill this process at once.
* ``resume``: start (re-attaching live processes), wait until every process is finished or
  waiting for a human, print a JSON summary, stop.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

from kernos.kernel.catalog import AgentBuild, AgentSpec, ToolSpec
from kernos.kernel.governed import ask_human
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.processes import LIVE, TERMINAL, ProcessState
from kernos.kernel.settings import load_settings

ADMIN = Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)
EFFECTS_DB = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("effects.db")
CRASH_MARKER = EFFECTS_DB.with_suffix(".crash")


def _connect() -> sqlite3.Connection:
    conn = sqlite3.connect(EFFECTS_DB, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, logical TEXT)")
    conn.execute("CREATE TABLE IF NOT EXISTS attempts (key TEXT, logical TEXT)")
    return conn


def effect(logical: str, idempotency_key: str) -> str:
    """The outside system: deduplicates by idempotency key, counts every attempt."""
    conn = _connect()
    conn.execute("INSERT INTO attempts VALUES (?, ?)", (idempotency_key, logical))
    conn.execute("INSERT OR IGNORE INTO effects VALUES (?, ?)", (idempotency_key, logical))
    conn.close()
    if CRASH_MARKER.exists():
        CRASH_MARKER.unlink()
        os.kill(os.getpid(), signal.SIGKILL)  # the effect landed; the call never returns
    time.sleep(0.05)
    return f"done {logical}"


class WorkState(TypedDict, total=False):
    job: str
    done: list[str]


def build_worker(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    tool = next(t for t in build.tools if t.name == "effect")

    def step(i: int) -> Any:
        async def node(state: WorkState) -> WorkState:
            result = await tool.ainvoke({"logical": f"{state['job']}:{i}"})
            return {"done": [*state.get("done", []), str(result)]}

        return node

    graph = StateGraph(WorkState)
    for i in range(3):
        graph.add_node(f"s{i}", step(i))
    graph.add_edge(START, "s0")
    graph.add_edge("s0", "s1")
    graph.add_edge("s1", "s2")
    graph.add_edge("s2", END)
    return graph.compile()


def build_asker(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def ask(state: dict[str, Any]) -> dict[str, Any]:
        answer = await ask_human("Collect bin 17?")
        return {"answer": answer["value"]}

    graph = StateGraph(dict)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return graph.compile()


class CrashPlugin:
    @hookimpl
    def register_tools(self, register: Any) -> None:
        register(ToolSpec(name="effect", description="Do an effect once.", func=effect))

    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(
            AgentSpec(name="worker", description="3 effects", build=build_worker, tools=("effect",))
        )
        register(AgentSpec(name="asker", description="asks", build=build_asker))


async def main(mode: str, count: int) -> None:
    plugins = PluginManager(entry_points=False)
    plugins.add(CrashPlugin(), name="crash-plugin")
    kernel = Kernel(load_settings(), plugins=plugins)
    await kernel.start()
    _connect().close()
    if mode == "spawn":
        for n in range(count):
            await kernel.processes.spawn("worker", {"job": f"job{n}"}, principal=ADMIN)
        await kernel.processes.spawn("asker", {}, principal=ADMIN)
        print("spawned", flush=True)
        await asyncio.Event().wait()
    elif mode == "crash-in-tool":
        CRASH_MARKER.touch()
        await kernel.processes.spawn("worker", {"job": "crashy"}, principal=ADMIN)
        await asyncio.Event().wait()
    elif mode == "crash-after-accept":
        await kernel.processes.spawn("worker", {"job": "accepted"}, principal=ADMIN)
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "resume":
        settled = TERMINAL | {ProcessState.WAITING}
        for info in await kernel.processes.list_processes(states=LIVE):
            await kernel.processes.wait(info.pid, timeout=120, until=settled)
        summary = [
            {
                "pid": p.pid,
                "agent": p.agent,
                "state": p.state.value,
                "waiting_on": p.waiting_on,
                "tool_calls": p.usage.tool_calls,
                "output": p.output,
                "error": p.error,
            }
            for p in await kernel.processes.list_processes()
        ]
        print(json.dumps(summary), flush=True)
        await kernel.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[3]) if len(sys.argv) > 3 else 0))
