"""Console tests: a real kernel serving its API in the test's event loop, the console app
attached to it over HTTP, and SVG snapshots through syrupy.

pytest-textual-snapshot 1.1 pins syrupy 4.8, which needs pytest < 9, so it cannot be
installed next to our pytest 9; its core is small and reproduced here: an SVG extension for
syrupy (``--snapshot-update`` rewrites the files), with the SVG's random ids normalized.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.clock import Clock, SimulatedClock
from kernos.kernel.governed import ask_human
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.tokens import read_admin_token
from kernos.tui.app import ConsoleApp, create_app

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
"""The simulated kernel's time in snapshot tests (so nothing on screen moves)."""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GreetState(TypedDict, total=False):
    name: str
    greeting: str


def build_greeter(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def greet(state: GreetState) -> GreetState:
        return {"greeting": f"Hello, {state.get('name', 'operator')}!"}

    graph = StateGraph(GreetState)
    graph.add_node("greet", greet)
    graph.add_edge(START, "greet")
    graph.add_edge("greet", END)
    return graph.compile()


class AskState(TypedDict, total=False):
    depot: Any


def build_dispatcher(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def ask(state: AskState) -> AskState:
        answer = await ask_human("Send 3 trucks to depot north?")
        return {"depot": answer.get("approved")}

    graph = StateGraph(AskState)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return graph.compile()


class ConsoleAgents:
    """A greeter that finishes at once and a dispatcher that waits for an operator."""

    @hookimpl
    def register_agents(self, register: Callable[[AgentSpec], None]) -> None:
        register(AgentSpec(name="greeter", description="Greets.", build=build_greeter))
        register(AgentSpec(name="dispatcher", description="Asks.", build=build_dispatcher))


@dataclass
class LiveKernel:
    """A kernel serving its API on ``port``, restartable on the same home and port."""

    home: Path
    port: int
    clock: Clock | None
    kernel: Kernel | None = None
    llm: Any = None
    """A scripted chat model for the kernel's agents (``None``: no LLM)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        settings = load_settings(home=self.home, api_port=self.port, event_max_attempts=1)
        plugins = PluginManager(entry_points=False)
        plugins.add(ConsoleAgents(), name="console-agents")
        self.kernel = Kernel(
            settings, plugins=plugins, clock=self.clock, serve_api=True, llm=self.llm
        )
        await self.kernel.start()

    async def stop(self) -> None:
        if self.kernel is not None:
            await self.kernel.stop()
            self.kernel = None

    def http(self) -> httpx.AsyncClient:
        token = read_admin_token(self.home)
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    async def run(self, agent: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self.http() as http:
            response = await http.post("/v1/runs", json={"agent": agent, "input": body or {}})
            assert response.status_code in (200, 201, 202), response.text
            result: dict[str, Any] = response.json()
            return result

    async def until(self, pid: int, *states: str) -> dict[str, Any]:
        async with self.http() as http:
            for _ in range(400):
                process: dict[str, Any] = (await http.get(f"/v1/processes/{pid}")).json()
                if process["state"] in states:
                    return process
                await asyncio.sleep(0.05)
        raise AssertionError(f"pid {pid} never reached {states}: {process}")

    def app(self, *, refresh_seconds: float = 0.3, **kwargs: Any) -> ConsoleApp:
        settings = load_settings(home=self.home, api_port=self.port)
        return create_app(settings=settings, refresh_seconds=refresh_seconds, **kwargs)


@pytest.fixture
async def live_kernel(kernos_home: Path) -> AsyncIterator[LiveKernel]:
    """A kernel on real time, with the greeter and dispatcher agents."""
    live = LiveKernel(home=kernos_home, port=_free_port(), clock=None)
    await live.start()
    try:
        yield live
    finally:
        await live.stop()


@pytest.fixture
async def frozen_kernel(kernos_home: Path) -> AsyncIterator[LiveKernel]:
    """A kernel whose clock stands still at ``T0`` (every timestamp it writes is ``T0``)."""
    live = LiveKernel(home=kernos_home, port=_free_port(), clock=SimulatedClock(T0))
    await live.start()
    try:
        yield live
    finally:
        await live.stop()


def frozen_now() -> datetime:
    """The console's clock in snapshot tests: 42 s after the frozen kernel's."""
    return T0 + timedelta(seconds=42)


def normalize_svg(svg: str) -> str:
    """Drop the random id Rich puts in every SVG's class names."""
    return re.sub(r"\bterminal-\d+-([\w-]+)", r"terminal-\1", svg)


class SVGSnapshot(SingleFileSnapshotExtension):
    """One ``.svg`` file per snapshot, compared after normalizing."""

    file_extension = "svg"
    _write_mode = WriteMode.TEXT

    def serialize(self, data: Any, **kwargs: Any) -> Any:
        return normalize_svg(str(super().serialize(data, **kwargs)))

    def read_snapshot_data_from_location(self, **kwargs: Any) -> Any:
        data = super().read_snapshot_data_from_location(**kwargs)
        return None if data is None else normalize_svg(str(data))


@pytest.fixture
def svg_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """``assert svg_snapshot(name=...) == svg``; ``pytest --snapshot-update`` rewrites."""
    return snapshot.use_extension(SVGSnapshot)
