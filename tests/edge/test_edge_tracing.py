"""An edge batch starts a W3C trace that the kernel joins: the events keep it, and the process
a trigger starts for one of them runs in it. The edge's backlog becomes a kernel metric."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import httpx
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from kernos.edge.buffer import ForwardBuffer
from kernos.edge.forwarder import Forwarder
from kernos.edge.sim import TOPIC
from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.events import Trigger
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import LOCAL_ADMIN, Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.storage.models import EventRow
from kernos.kernel.telemetry import Telemetry
from kernos.kernel.tokens import read_admin_token
from tests.conftest import free_port


class Seen(TypedDict, total=False):
    event: Any
    seen: bool


def build_watcher(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def look(state: Seen) -> Seen:
        return {"seen": True}

    graph = StateGraph(Seen)
    graph.add_node("look", look)
    graph.add_edge(START, "look")
    graph.add_edge("look", END)
    return graph.compile()


ADMIN = Principal(tenant="default", name=LOCAL_ADMIN, kind=PrincipalKind.PERSON)


class Watch:
    @hookimpl
    def register_agents(self, register: Callable[[AgentSpec], None]) -> None:
        register(AgentSpec(name="bin-watch", description="Looks at a bin.", build=build_watcher))

    @hookimpl
    def register_triggers(self, register: Callable[[Trigger], None]) -> None:
        register(
            Trigger(
                name="on-fill",
                pattern=TOPIC,
                agent="bin-watch",
                tenant="default",
                principal=ADMIN,
            )
        )


READING = {"bin": 7, "level": 0.93, "temp_c": 12.0, "voc_ppm": 1.0, "ts": 3600.0}


async def test_an_edge_batch_is_one_trace_from_the_edge_to_the_process(
    kernos_home: Path, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    port = free_port()
    plugins = PluginManager(entry_points=False)
    plugins.add(Watch(), name="watch")
    kernel = Kernel(
        load_settings(home=kernos_home, api_port=port),
        plugins=plugins,
        serve_api=True,
        telemetry=Telemetry(span_processors=[SimpleSpanProcessor(exporter)]),
    )
    await kernel.start()
    try:
        url = f"http://127.0.0.1:{port}"
        buffer = ForwardBuffer(tmp_path / "buffer.db")
        dead = ForwardBuffer(tmp_path / "buffer.db.dead")
        buffer.append(TOPIC, READING, event_id="edge-7-3600000")
        forwarder = Forwarder(
            buffer, url, key=read_admin_token(kernos_home), dead_letters=dead, node="edge-7"
        )
        sent = await asyncio.to_thread(forwarder.send_batch)
        assert sent == 1
        await kernel.events.drain()
        async with kernel.db.read() as session:
            [traceparent] = await session.scalars(select(EventRow.traceparent))
        assert traceparent is not None
        _, trace_id, edge_span, _ = traceparent.split("-")
        for _ in range(200):
            agents = [
                s for s in exporter.get_finished_spans() if s.name == "invoke_agent bin-watch"
            ]
            if agents:
                break
            await asyncio.sleep(0.05)
        [agent] = agents
        assert format(agent.context.trace_id, "032x") == trace_id  # the edge's trace
        assert agent.parent is not None and format(agent.parent.span_id, "016x") == edge_span
        headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            text = (await http.get("/metrics")).text
    finally:
        await kernel.stop()
    depth = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "kernos_edge_buffer_depth"
    ]
    assert [(s.labels.get("kernos_edge_node"), s.value) for s in depth] == [("edge-7", 1.0)]
