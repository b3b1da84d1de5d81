"""Telemetry: every name is declared once, and the kernel's own providers carry the data."""

from __future__ import annotations

import asyncio
import re

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kernos.kernel import telemetry as t
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import Settings


def test_names_are_unique_and_follow_conventions() -> None:
    names = list(t.declared_names())
    assert len(names) == len(set(names))
    for spec in t.METRICS:
        assert re.fullmatch(r"(gen_ai|kernos)(\.[a-z_]+)+", spec.name), spec.name
        assert spec.description.endswith(".")
    assert "gen_ai.client.operation.duration" in names
    assert "gen_ai.client.token.usage" in names
    assert "execute_tool {gen_ai.tool.name}" in names
    assert {"kernos.syscall.duration", "kernos.scheduler.queue_depth", "kernos.processes"} <= set(
        names
    )


def test_span_names_are_filled_from_declared_templates() -> None:
    assert t.span_name(t.SPAN_EXECUTE_TOOL, **{"gen_ai.tool.name": "solve_routes"}) == (
        "execute_tool solve_routes"
    )
    with pytest.raises(KeyError, match="needs attribute"):
        t.span_name(t.SPAN_CHAT)
    with pytest.raises(KeyError, match="not declared"):
        t.span_name("made up {x}", x="1")


def test_every_declared_metric_has_an_instrument() -> None:
    reader = InMemoryMetricReader()
    telemetry = t.Telemetry(metric_readers=[reader])
    telemetry.instrument(t.SYSCALL_DURATION).record(0.002, {"kernos.syscall.kind": "tool.call"})
    telemetry.instrument(t.PROCESSES).add(1, {"state": "running"})
    telemetry.instrument(t.BREAKER_STATE).set(2, {"backend": "vllm"})
    exported = {
        m.name
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert {"kernos.syscall.duration", "kernos.processes", "kernos.breaker.state"} <= exported
    with pytest.raises(KeyError, match="not declared"):
        telemetry.instrument(t.MetricSpec(name="x.y", kind="counter", unit="1", description="."))
    telemetry.shutdown()


async def test_the_kernel_emits_startup_and_commit_telemetry(kernos_settings: Settings) -> None:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = t.Telemetry(span_processors=[SimpleSpanProcessor(spans)], metric_readers=[reader])
    async with Kernel(
        kernos_settings, plugins=PluginManager(entry_points=False), telemetry=telemetry
    ) as kernel:
        await asyncio.gather(*(kernel.identity.ensure_tenant(f"t{i}") for i in range(20)))
    names = [s.name for s in spans.get_finished_spans()]
    assert t.SPAN_KERNEL_START in names
    assert t.SPAN_STORAGE_COMMIT in names
    batch = next(
        m
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == t.STORAGE_COMMIT_BATCH.name
    )
    point = batch.data.data_points[0]
    assert point.sum >= 22  # 20 tenants + default tenant + local admin
    telemetry.shutdown()


def test_kernos_leaves_the_global_tracer_provider_alone() -> None:
    before = trace.get_tracer_provider()
    t.Telemetry()
    assert trace.get_tracer_provider() is before
    disabled = t.Telemetry(enabled=False)
    with disabled.tracer.start_as_current_span("ignored") as span:
        assert not span.is_recording()
