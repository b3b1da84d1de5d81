"""A run's webhook is delivered in the run's trace: the receiver gets a ``traceparent`` whose
parent is the kernel's delivery span, itself a child of the caller's span."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.telemetry import SPAN_WEBHOOK, Telemetry
from kernos.kernel.tokens import read_admin_token
from tests.api.test_api import Agents, free_port
from tests.api.test_webhooks import serving

TRACE_ID = "5bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "10f067aa0ba902b7"


async def test_the_webhook_carries_the_runs_trace(kernos_home: Path) -> None:
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(span_processors=[SimpleSpanProcessor(exporter)])
    port = free_port()
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="test-agents")
    kernel = Kernel(
        load_settings(home=kernos_home, api_port=port, webhook_allow_private=True),
        plugins=plugins,
        serve_api=True,
        telemetry=telemetry,
    )
    await kernel.start()
    try:
        with serving(free_port()) as receiver:
            headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
            ) as http:
                for traceparent in (f"00-{TRACE_ID}-{PARENT_ID}-01", None):
                    response = await http.post(
                        "/v1/runs",
                        json={
                            "agent": "greeter",
                            "input": {"name": "Ada"},
                            "webhook_url": receiver.url,
                        },
                        headers={"traceparent": traceparent} if traceparent else {},
                    )
                    assert response.status_code == 202, response.text
                    before = len(receiver.received)
                    for _ in range(400):
                        if len(receiver.received) > before:
                            break
                        await asyncio.sleep(0.025)
            joined, fresh = (r.headers for r in receiver.received)
    finally:
        await kernel.stop()
        telemetry.shutdown()

    deliveries = [s for s in exporter.get_finished_spans() if s.name == SPAN_WEBHOOK]
    assert len(deliveries) == 2 and all(s.kind is SpanKind.CLIENT for s in deliveries)
    first = next(s for s in deliveries if format(s.context.trace_id, "032x") == TRACE_ID)
    assert first.parent is not None and format(first.parent.span_id, "016x") == PARENT_ID
    assert joined["traceparent"].split("-")[1:3] == [
        TRACE_ID,
        format(first.context.span_id, "016x"),
    ]
    assert dict(first.attributes or {})["http.response.status_code"] == 204
    # Without a caller's trace the delivery starts one (not under kernos.kernel.start)
    # and still tells the receiver.
    second = next(s for s in deliveries if s is not first)
    assert second.parent is None
    assert fresh["traceparent"].split("-")[1] == format(second.context.trace_id, "032x")
