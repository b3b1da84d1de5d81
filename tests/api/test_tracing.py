"""W3C ``traceparent`` is honoured and ``X-Request-ID`` reaches the audit log."""

from __future__ import annotations

from pathlib import Path

import httpx
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.telemetry import Telemetry
from kernos.kernel.tokens import read_admin_token
from tests.api.test_api import Agents, free_port, scripted_llm

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


async def test_a_run_joins_the_callers_trace_and_carries_its_request_id(
    kernos_home: Path,
) -> None:
    exporter = InMemorySpanExporter()
    port = free_port()
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="test-agents")
    kernel = Kernel(
        load_settings(home=kernos_home, api_port=port),
        plugins=plugins,
        llm=scripted_llm(),
        serve_api=True,
        telemetry=Telemetry(span_processors=[SimpleSpanProcessor(exporter)]),
    )
    await kernel.start()
    try:
        headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
        ) as http:
            response = await http.post(
                "/v1/runs",
                json={"agent": "calc", "wait": 30},
                headers={
                    "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
                    "X-Request-ID": "req-7f3a",
                },
            )
            assert response.json()["state"] == "done", response.text
            assert response.headers["x-request-id"] == "req-7f3a"
            process = response.json()
            assert process["correlation_id"] == "req-7f3a"
            records = (await http.get("/v1/audit", params={"pid": process["pid"]})).json()
            untraced = await http.post(
                "/v1/runs", json={"agent": "calc", "wait": 30}, headers={"traceparent": "junk"}
            )
            assert untraced.status_code == 200, untraced.text  # malformed: a new trace
    finally:
        await kernel.stop()

    assert records["count"] >= 5
    assert {r["correlation_id"] for r in records["data"]} == {"req-7f3a"}
    syscall_records = [r for r in records["data"] if r["event"].startswith("syscall.")]
    assert syscall_records and {r["trace_id"] for r in syscall_records} == {TRACE_ID}

    spans = exporter.get_finished_spans()
    syscalls = [s for s in spans if s.name.startswith("kernos.syscall")]
    joined = [s for s in syscalls if format(s.context.trace_id, "032x") == TRACE_ID]
    assert len(joined) == 3  # two llm.chat and one tool.call of the first run
    in_trace = [s for s in spans if format(s.context.trace_id, "032x") == TRACE_ID]
    roots = [s for s in in_trace if s.parent is not None and s.parent.span_id == int(PARENT_ID, 16)]
    assert roots and all(r.parent.is_remote for r in roots)
    other = [s for s in syscalls if format(s.context.trace_id, "032x") != TRACE_ID]
    assert len(other) == 3  # the second run got a trace of its own
    # Each run is one span, invoke_agent, with every syscall of the run below it.
    agents = [s for s in spans if s.name == "invoke_agent calc"]
    assert len(agents) == 2
    [first] = [a for a in agents if format(a.context.trace_id, "032x") == TRACE_ID]
    assert first.parent is not None and first.parent.span_id == int(PARENT_ID, 16)
    assert first.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert first.attributes["kernos.process.state"] == "done"
    by_id = {s.context.span_id: s for s in spans}

    def under(span, ancestor) -> bool:
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            if span is ancestor:
                return True
        return False

    assert all(under(s, first) for s in joined)
    [second] = [a for a in agents if a is not first]
    assert {s.context.trace_id for s in other} == {second.context.trace_id}
    assert all(under(s, second) for s in other)


async def test_an_operator_action_records_its_request_id(kernos_home: Path) -> None:
    port = free_port()
    plugins = PluginManager(entry_points=False)
    kernel = Kernel(load_settings(home=kernos_home, api_port=port), plugins=plugins, serve_api=True)
    await kernel.start()
    try:
        headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
        ) as http:
            created = await http.post(
                "/v1/keys",
                json={"principal": "olga", "role": "viewer"},
                headers={"X-Request-ID": "req-key-1"},
            )
            assert created.status_code == 201, created.text
            viewer = {"Authorization": f"Bearer {created.json()['token']}"}
            denied = await http.post(
                "/v1/keys",
                json={"principal": "mallory", "role": "admin"},
                headers={**viewer, "X-Request-ID": "req-denied-1"},
            )
            assert denied.status_code == 403
            records = (await http.get("/v1/audit", params={"limit": 50})).json()["data"]
    finally:
        await kernel.stop()
    by_request = {r["correlation_id"]: r["event"] for r in records if r["correlation_id"]}
    assert by_request.get("req-key-1", "").startswith("key.")
    assert by_request.get("req-denied-1") == "operator.denied"
