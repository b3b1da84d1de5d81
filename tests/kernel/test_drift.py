"""Drift: a shifted input stream is flagged (PSI and KS), an unshifted one is not, and the
flag arrives on a real kernel's event bus as ``model.drift``."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kernos.kernel.drift import (
    DRIFT_TOPIC,
    DriftMonitor,
    DriftReport,
    bus_publisher,
    ks_two_sample,
    psi,
)
from kernos.kernel.errors import InvalidInput
from kernos.kernel.events import Event
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import Settings


def readings(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> list[dict[str, float]]:
    """Bin sensor inputs: fill level and temperature; ``shift`` drifts the fill sensor."""
    fill = rng.normal(0.55 + shift, 0.12, n)
    temperature = rng.normal(18.0, 4.0, n)
    return [
        {"fill": float(f), "temperature": float(t)} for f, t in zip(fill, temperature, strict=True)
    ]


async def feed(monitor: DriftMonitor, samples: list[dict[str, float]]) -> list[DriftReport]:
    reports = []
    for sample in samples:
        report = await monitor.observe("hazard", sample)
        if report is not None:
            reports.append(report)
    return reports


async def test_a_drifted_stream_is_flagged_and_a_steady_one_is_not() -> None:
    rng = np.random.default_rng(7)
    monitor = DriftMonitor(reference_size=1000, window_size=500)
    assert await feed(monitor, readings(rng, 1000)) == []  # the reference fills first
    steady = await feed(monitor, readings(rng, 2000))
    assert len(steady) == 4 and not any(r.drifted for r in steady)
    assert all(f.psi < 0.1 and f.p_value > 0.001 for r in steady for f in r.features.values())
    [drifted] = await feed(monitor, readings(rng, 500, shift=0.08))
    assert drifted.window == 5 and drifted.drifted
    assert drifted.features["fill"].drifted and drifted.features["fill"].psi > 0.2
    assert not drifted.features["temperature"].drifted  # only the fill sensor moved


def test_scores_on_known_samples() -> None:
    rng = np.random.default_rng(1)
    same = rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)
    moved = rng.normal(0, 1, 5000), rng.normal(0.5, 1, 5000)
    assert psi(*same) < 0.01 and psi(*moved) > 0.2
    d_same, p_same = ks_two_sample(*same)
    d_moved, p_moved = ks_two_sample(*moved)
    assert d_same < 0.03 and p_same > 0.05
    assert 0.15 < d_moved < 0.25 and p_moved < 1e-12  # Phi(0.25) - Phi(-0.25) = 0.197


async def test_a_reference_can_be_given_and_bad_input_is_refused() -> None:
    rng = np.random.default_rng(3)
    monitor = DriftMonitor(reference_size=100, window_size=100)
    monitor.set_reference("hazard", readings(rng, 400))
    [report] = await feed(monitor, readings(rng, 100, shift=0.2))
    assert report.window == 1 and report.drifted
    with pytest.raises(InvalidInput, match="must be a number"):
        await monitor.observe("hazard", {"fill": float("nan")})
    with pytest.raises(InvalidInput, match="bins"):
        DriftMonitor(window_size=5)


async def test_drift_arrives_on_the_kernels_event_bus(kernos_settings: Settings) -> None:
    received: list[Event] = []
    arrived = asyncio.Event()

    async def operator(event: Event) -> None:
        received.append(event)
        arrived.set()

    rng = np.random.default_rng(11)
    async with Kernel(kernos_settings, plugins=PluginManager(entry_points=False)) as kernel:
        kernel.events.subscribe("model.*", operator, name="drift-watch")
        monitor = DriftMonitor(bus_publisher(kernel.events), reference_size=300, window_size=300)
        await feed(monitor, readings(rng, 600))  # reference, then a steady window
        assert received == []
        await feed(monitor, readings(rng, 300, shift=0.1))
        await asyncio.wait_for(arrived.wait(), 10)
    [event] = received
    assert event.topic == DRIFT_TOPIC and event.tenant == "default"
    assert event.data["model"] == "hazard" and event.data["window"] == 2
    assert event.data["drifted"] == ["fill"]
    assert event.data["features"]["fill"]["psi"] > 0.2
