"""OTLP/HTTP export: one run through the API arrives at a real OTLP receiver as a span tree
joined to the caller's trace, and the syscall metrics arrive with it."""

from __future__ import annotations

from pathlib import Path

import httpx

from kernos.kernel.kernel import Kernel
from kernos.kernel.otlp import telemetry_from_environ
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.tokens import read_admin_token
from tests.api.otlp_receiver import otlp_receiver
from tests.api.test_api import Agents, free_port, scripted_llm

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


async def test_a_run_is_exported_over_otlp_as_one_trace_with_its_metrics(
    kernos_home: Path,
) -> None:
    with otlp_receiver() as (endpoint, received):
        telemetry = telemetry_from_environ(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_HEADERS": "x-scope=city%20ops",
                "OTEL_SERVICE_NAME": "kernos-under-test",
                "OTEL_METRIC_EXPORT_INTERVAL": "3600000",  # only the final flush exports
            }
        )
        port = free_port()
        plugins = PluginManager(entry_points=False)
        plugins.add(Agents(), name="test-agents")
        kernel = Kernel(
            load_settings(home=kernos_home, api_port=port),
            plugins=plugins,
            llm=scripted_llm(),
            serve_api=True,
            telemetry=telemetry,
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
                    headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
                )
                assert response.json()["state"] == "done", response.text
        finally:
            await kernel.stop()
            telemetry.shutdown()  # flushes the batch span processor and the metric reader

    assert received.content_types == {"application/x-protobuf"}
    assert all(h.get("x-scope") == "city ops" for h in received.headers)
    resource = received.traces[0].resource_spans[0].resource
    service = {a.key: a.value.string_value for a in resource.attributes}["service.name"]
    assert service == "kernos-under-test"

    spans = [s for s in received.spans() if s.trace_id.hex() == TRACE_ID]
    by_id = {s.span_id: s for s in spans}
    names = sorted(s.name for s in spans)
    assert names.count("kernos.syscall llm.chat") == 2
    assert names.count("kernos.syscall tool.call") == 1
    assert "execute_tool add" in names
    assert sum(name.startswith("chat ") for name in names) == 2

    def ancestors(span: object) -> list[str]:
        chain = []
        parent = span.parent_span_id  # type: ignore[attr-defined]
        while parent in by_id:
            chain.append(by_id[parent].name)
            parent = by_id[parent].parent_span_id
        chain.append(parent.hex())  # where the chain leaves what Kernos exported
        return chain

    tool = next(s for s in spans if s.name == "execute_tool add")
    assert ancestors(tool)[0] == "kernos.syscall tool.call"
    for span in spans:
        assert ancestors(span)[-1] == PARENT_ID, span.name  # every span reaches the caller's
    attributes = {a.key: a.value for a in tool.attributes}
    assert attributes["gen_ai.tool.name"].string_value == "add"
    assert attributes["gen_ai.operation.name"].string_value == "execute_tool"

    assert {"kernos.syscalls", "kernos.syscall.duration"} <= received.metric_names()
    counts: dict[str, int] = {}
    for metric in received.metric("kernos.syscalls"):
        for point in metric.sum.data_points:
            labels = {a.key: a.value.string_value for a in point.attributes}
            if labels["outcome"] == "ok":
                kind = labels["kernos.syscall.kind"]
                counts[kind] = max(counts.get(kind, 0), int(point.as_int or point.as_double))
    assert counts == {"llm.chat": 2, "tool.call": 1}
    durations = received.metric("kernos.syscall.duration")[-1].histogram.data_points
    assert sum(p.count for p in durations) == 3


async def test_tracing_off_exports_metrics_but_no_spans(kernos_home: Path) -> None:
    with otlp_receiver() as (endpoint, received):
        telemetry = telemetry_from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, tracing=False)
        port = free_port()
        plugins = PluginManager(entry_points=False)
        plugins.add(Agents(), name="test-agents")
        kernel = Kernel(
            load_settings(home=kernos_home, api_port=port, tracing=False),
            plugins=plugins,
            llm=scripted_llm(),
            serve_api=True,
            telemetry=telemetry,
        )
        await kernel.start()
        try:
            headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
            ) as http:
                response = await http.post("/v1/runs", json={"agent": "calc", "wait": 30})
                assert response.json()["state"] == "done", response.text
        finally:
            await kernel.stop()
            telemetry.shutdown()
    assert received.traces == []
    assert "kernos.syscalls" in received.metric_names()
