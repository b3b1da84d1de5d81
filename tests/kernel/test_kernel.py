"""Kernel lifecycle: startup hooks, essential failures, summary, the injected clock."""

from __future__ import annotations

import asyncio

import pytest

from kernos.kernel.clock import SimulatedClock
from kernos.kernel.errors import EssentialPluginError
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import Settings


class Lifecycle:
    def __init__(self) -> None:
        self.events: list[str] = []

    @hookimpl
    async def on_startup(self, kernel: Kernel) -> None:
        # Storage is ready when startup hooks run: a plugin can seed its own records.
        await kernel.identity.ensure_principal(
            "default", "edge-forwarder", kind=PrincipalKind.SERVICE
        )
        self.events.append(f"startup running={kernel.running}")

    @hookimpl
    def on_shutdown(self, kernel: Kernel) -> None:
        self.events.append("shutdown")


async def test_lifecycle_hooks_see_a_ready_kernel(kernos_settings: Settings) -> None:
    plugin = Lifecycle()
    pm = PluginManager(entry_points=False)
    pm.add(plugin, name="lifecycle")
    kernel = Kernel(kernos_settings, plugins=pm)
    async with kernel:
        assert plugin.events == ["startup running=True"]
        principal = await kernel.identity.get_principal("default", "edge-forwarder")
        assert principal.kind is PrincipalKind.SERVICE
    assert plugin.events == ["startup running=True", "shutdown"]
    assert not kernel.running


async def test_a_failing_essential_startup_aborts_and_releases_everything(
    kernos_settings: Settings,
) -> None:
    class BrokenAudit:
        @hookimpl
        def on_startup(self, kernel: Kernel) -> None:
            raise OSError("audit log directory is read-only")

    pm = PluginManager(entry_points=False)
    pm.add(BrokenAudit(), name="kernos.policy.audit", essential=True)
    kernel = Kernel(kernos_settings, plugins=pm)
    with pytest.raises(EssentialPluginError, match="audit log directory is read-only"):
        await kernel.start()
    assert not kernel.running
    # Nothing is left held: a healthy kernel starts on the same database at once.
    async with Kernel(kernos_settings, plugins=PluginManager(entry_points=False)) as healthy:
        assert healthy.running


async def test_a_failing_optional_startup_is_skipped(kernos_settings: Settings) -> None:
    class Flaky:
        @hookimpl
        def register_tools(self, register) -> None:
            from kernos.kernel.catalog import ToolSpec

            register(ToolSpec(name="mqtt_publish", description="Publish.", func=print))

        @hookimpl
        def on_startup(self, kernel: Kernel) -> None:
            raise RuntimeError("MQTT broker down")

    pm = PluginManager(entry_points=False)
    pm.add(Flaky(), name="mqtt-bridge")
    async with Kernel(kernos_settings, plugins=pm) as kernel:
        summary = await kernel.summary()
        assert "mqtt_publish" not in kernel.catalog.tools  # out with its plugin
    assert summary.plugins_failed == {
        "mqtt-bridge": "failed in on_startup: RuntimeError: MQTT broker down"
    }


async def test_run_stops_after_duration_on_the_kernel_clock(kernos_settings: Settings) -> None:
    clock = SimulatedClock()
    kernel = Kernel(kernos_settings, clock=clock, plugins=PluginManager(entry_points=False))
    run = asyncio.create_task(kernel.run(duration=3600))
    await kernel.ready.wait()
    await clock.wait_for_sleepers(1)  # the run's duration timer
    assert kernel.running
    await clock.advance(3600)
    summary = await asyncio.wait_for(run, timeout=30)
    assert summary.uptime_seconds == 3600
    assert summary.tenants == ["default"]
    assert summary.schema
    assert not kernel.running


async def test_run_stops_on_the_stop_event(kernos_settings: Settings) -> None:
    stop = asyncio.Event()
    kernel = Kernel(kernos_settings, plugins=PluginManager(entry_points=False))
    run = asyncio.create_task(kernel.run(stop=stop))
    await kernel.ready.wait()
    stop.set()
    summary = await asyncio.wait_for(run, timeout=30)
    assert summary.tenants == ["default"]
    assert not kernel.running


async def test_the_testing_fixture_gives_a_running_kernel(kernos_kernel: Kernel) -> None:
    assert kernos_kernel.running
    summary = await kernos_kernel.summary()
    assert "kernos.kernel.cli.commands" in summary.plugins_loaded
    assert summary.writes >= 2


class Greeter:
    @hookimpl
    def register_tools(self, register) -> None:
        from kernos.kernel.catalog import ToolSpec

        register(ToolSpec(name="greet", description="Greet someone.", func=lambda name: name))


@pytest.fixture
def greeter(kernos_plugin) -> None:
    kernos_plugin(Greeter(), name="greeter")


async def test_inline_plugins_reach_the_fixture_kernel(greeter, kernos_kernel: Kernel) -> None:
    # What a plugin author writes with the kernos.kernel.testing fixtures (loaded via pytest11).
    assert kernos_kernel.catalog.tools["greet"].plugin == "greeter"
    assert kernos_kernel.catalog.tools["greet"].func("Ada") == "Ada"
