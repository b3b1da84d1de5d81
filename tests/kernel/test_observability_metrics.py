"""Metrics the observability issue added: idle backend capacity, syscall latency by tool and
model."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from kernos.kernel.clock import SystemClock
from kernos.kernel.llm import BackendConfig, ChatRequest
from kernos.kernel.scheduling import LLMScheduler
from kernos.kernel.telemetry import SCHEDULER_IDLE_CAPACITY, Telemetry

from .scheduler_standin import StandIn, settle


def _idle(reader: InMemoryMetricReader) -> dict[str, float]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        str(point.attributes["kernos.backend"]): point.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == SCHEDULER_IDLE_CAPACITY.name
        for point in metric.data.data_points
    }


async def test_idle_capacity_follows_calls_in_flight_and_resizes() -> None:
    reader = InMemoryMetricReader()
    telemetry = Telemetry(metric_readers=[reader])
    backend = StandIn(BackendConfig(name="main", model="m-1", concurrency=4), gated=True)
    sched = LLMScheduler({"main": backend}, clock=SystemClock(), telemetry=telemetry)
    assert _idle(reader) == {"main": 4}

    def ask(tag: str) -> Any:
        request = ChatRequest(messages=[{"role": "user", "content": tag}])
        return asyncio.create_task(sched.chat(request, backend="main"))

    tasks = [ask(f"r{i}") for i in range(6)]
    await settle()
    assert _idle(reader) == {"main": 0}  # four running, two queued
    sched.resize("main", 8)
    await settle()
    assert _idle(reader) == {"main": 2}  # the two waiting ones started at once
    for _ in range(100):
        if all(t.done() for t in tasks):
            break
        backend.open_gate()
        await settle()
    assert all(t.done() for t in tasks)
    assert _idle(reader) == {"main": 8}
    await sched.aclose()
    telemetry.shutdown()
