"""The city scenario in a real kernel (SQLite and PostgreSQL): the board reads the event log,
the dispatcher's every step is a syscall, normal routes go out without approval, and a
hazardous pickup waits for an inspector (an operator may not approve it) and empties its bin
once, however often the call is replayed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from kernos.kernel.clock import SimulatedClock
from kernos.kernel.errors import NotFound, PolicyDenied
from kernos.kernel.events import Event
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import BUILTIN_PLUGINS, PluginManager
from kernos.kernel.processes import SETTLED, ProcessState
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import AuditRow, SyscallRow
from kernos.plugins.city import AGENT, DAY_TOPIC, HAZARD_RULE
from kernos.plugins.city.board import PAGE, BinBoard
from kernos.plugins.city.demo import EPOCH
from kernos.plugins.city.fleet import DispatchOrder, SimulatedFleet
from kernos.plugins.city.planner import Planner
from kernos.plugins.city.scenario import (
    CityScenario,
    SimulatedInspector,
    install,
    scenario_for,
)
from kernos.plugins.routing.experiment import make_setup
from kernos.plugins.sensors import TOPIC
from kernos.plugins.sensors.params import CityParams
from kernos.plugins.sensors.sim import Simulation
from kernos.policy.service import policy_services

ADMIN = Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)
OTTO = Principal(tenant="default", name="otto", kind=PrincipalKind.PERSON)
INSPECTOR = Principal(tenant="default", name="inspector", kind=PrincipalKind.PERSON)
WAIT = 120
HAZARD_BIN = 5


def reading(b: int, level: float, ts: float, *, hazard: bool = False) -> dict[str, Any]:
    """A forwarded reading as an edge agent sends it."""
    return {
        "bin": b,
        "level": level,
        "temp_c": 65.0 if hazard else 12.0,
        "voc_ppm": 80.0 if hazard else 1.5,
        "ts": ts,
        "raw_level": level,
        "band": "must_go" if level >= 0.9 else "ok",
        "hazard": hazard,
        "reasons": ["hazard"] if hazard else ["heartbeat"],
    }


@pytest.fixture
async def city(kernos_settings: Settings) -> AsyncIterator[tuple[Kernel, CityScenario]]:
    params = replace(CityParams(), n_bins=40, n_trucks=2)
    setup = make_setup(params, city_seed=1, seed=1, days=40)
    sim = Simulation(setup.city, params, 1, days=45)
    clock = SimulatedClock(EPOCH)
    kernel = Kernel(kernos_settings, plugins=PluginManager(entry_points=False), clock=clock)
    await kernel.start()
    scenario = CityScenario(
        tenant="default",
        board=BinBoard("default"),
        planner=Planner(setup, theta=0.1, prize_m=800.0),
        fleet=SimulatedFleet(sim, speed_kmh=params.speed_kmh),
        bus=kernel.events,
        clock=clock,
        epoch=EPOCH,
    )
    try:
        await install(kernel, scenario, by=ADMIN)
        await policy_services(kernel).engine.grant_role("otto", "operator", "default")
        await clock.advance(7 * 3600)  # day 0, shift start
        yield kernel, scenario
    finally:
        await kernel.stop()


def test_the_plugin_is_built_in_with_its_tools_and_agent() -> None:
    assert "kernos.plugins.city.plugin" in [b.module for b in BUILTIN_PLUGINS]
    plugins = PluginManager(entry_points=False)
    catalog = plugins.catalog()
    assert {"city_board", "city_plan", "dispatch_trucks"} <= set(catalog.tools)
    assert set(catalog.agents[AGENT].tools) <= set(catalog.tools)
    assert catalog.agents[AGENT].plugin == "kernos.plugins.city.plugin"
    assert not [t for t in plugins.triggers() if t.plugin == "kernos.plugins.city.plugin"]


async def test_install_adds_the_day_trigger(city: tuple[Kernel, CityScenario]) -> None:
    kernel, _ = city
    (trigger,) = [t for t in kernel.events.triggers if t.pattern == DAY_TOPIC]
    assert (trigger.agent, trigger.principal.name) == (AGENT, "dispatcher")
    event = Event(topic=DAY_TOPIC, tenant="default", source="t", data={"day": 3})
    assert trigger.input_for(event) == {"day": 3}


async def test_the_board_reads_the_event_log_in_pages(
    city: tuple[Kernel, CityScenario],
) -> None:
    kernel, _ = city
    events = [
        Event(
            topic=TOPIC, tenant="default", source="edge", id=f"r{i}", data=reading(i % 40, 0.3, i)
        )
        for i in range(PAGE + 200)
    ]
    events.append(Event(topic=TOPIC, tenant="default", source="edge", id="bad", data={"bin": 1}))
    await kernel.events.publish_batch(events)
    board = BinBoard("default")
    assert await board.catch_up(kernel.events) == PAGE + 201
    assert board.skipped == 1  # refused by the schema, stored, never on the board
    assert len(board.bins) == 40 and board.bins[7].ts == PAGE + 200 - 33
    assert await board.catch_up(kernel.events) == 0  # nothing new
    with pytest.raises(NotFound, match="no city scenario"):
        scenario_for(kernel.processes, "elsewhere")


async def test_a_day_with_a_hazardous_bin(city: tuple[Kernel, CityScenario]) -> None:
    kernel, scenario = city
    fleet = scenario.fleet
    assert isinstance(fleet, SimulatedFleet)
    night = [
        Event(
            topic=TOPIC,
            tenant="default",
            source="edge",
            id=f"n{b}",
            data=reading(
                b, 0.97 if b in (3, HAZARD_BIN) else 0.2, 6 * 3600.0, hazard=b == HAZARD_BIN
            ),
        )
        for b in range(40)
    ]
    await kernel.events.publish_batch(night)
    await kernel.events.publish(
        Event(topic=DAY_TOPIC, tenant="default", source="sim", id="day-0", data={"day": 0})
    )
    await kernel.events.drain()
    info = await kernel.processes.by_spawn_key(
        "trigger:default:city-day-default:day-0", tenant="default"
    )
    assert info is not None and info.owner == "dispatcher"
    info = await kernel.processes.wait(info.pid, timeout=WAIT, until=SETTLED)
    assert info.state is ProcessState.WAITING, info.error

    # The normal routes went out without asking anyone; the full bin 3 was on them.
    (normal,) = fleet.receipts.values()
    assert not normal.hazard and 3 in normal.emptied and HAZARD_BIN not in normal.emptied
    (approval,) = await kernel.processes.approvals()
    assert approval.pid == info.pid and approval.required_role == "inspector"
    assert approval.rule == HAZARD_RULE.format(tenant="default")
    assert approval.escalation == ("admin",)
    assert approval.proposed["args"]["bins_hazardous"] == [HAZARD_BIN]
    with pytest.raises(PolicyDenied, match="approval:inspector"):
        await kernel.processes.decide(approval.id, approved=True, by=OTTO)

    inspector = SimulatedInspector(principal=INSPECTOR, threshold=0.5, delay_min=10)
    await kernel.clock.advance(600)  # type: ignore[attr-defined]
    assert await inspector.answer(kernel, approval) is True
    assert inspector.decisions[0][2] == pytest.approx(10.0)
    done = await kernel.processes.wait(info.pid, timeout=WAIT)
    assert done.state is ProcessState.DONE, done.error
    (outcome,) = done.output["hazardous"]
    assert outcome["bin"] == HAZARD_BIN and outcome["outcome"] == "emptied"
    assert [r.hazard for r in fleet.receipts.values()] == [False, True]

    # A replayed dispatch (the same syscall key) returns the receipt and empties nothing.
    key, first = list(fleet.receipts.items())[1]
    again = fleet.dispatch(DispatchOrder(day=0, hazard=True, bins_hazardous=(HAZARD_BIN,)), key=key)
    assert again.replayed and again.emptied == first.emptied
    record = scenario.fleet.sim.step_day()  # type: ignore[attr-defined]
    emptied = record.empty_bins.tolist()
    assert sorted(emptied) == sorted({*normal.emptied, HAZARD_BIN})  # each bin once

    # Every step is a syscall, journalled and audited under the process.
    async with kernel.db.read() as session:
        calls = list(await session.scalars(select(SyscallRow).where(SyscallRow.pid == info.pid)))
        audit = list(await session.scalars(select(AuditRow).where(AuditRow.pid == info.pid)))
    assert sorted(c.target for c in calls) == [
        "city_board",
        "city_plan",
        "dispatch_trucks",
        "dispatch_trucks",
        "hazard_classify",
    ]
    assert all(c.status == "done" for c in calls), [(c.target, c.status) for c in calls]
    targets = {(a.event, a.target) for a in audit}
    for tool in ("city_board", "hazard_classify", "city_plan", "dispatch_trucks"):
        assert any(t == tool for _, t in targets), tool
    assert any(e == "approval.requested" for e, _ in targets)


async def test_a_denied_hazardous_pickup_leaves_the_bin(city: tuple[Kernel, CityScenario]) -> None:
    kernel, scenario = city
    await kernel.events.publish(
        Event(
            topic=TOPIC,
            tenant="default",
            source="edge",
            id="h",
            data=reading(HAZARD_BIN, 0.5, 6 * 3600.0, hazard=True),
        )
    )
    info = await kernel.processes.spawn(AGENT, {"day": 0}, principal=ADMIN)
    info = await kernel.processes.wait(info.pid, timeout=WAIT, until=SETTLED)
    assert info.state is ProcessState.WAITING, info.error
    (approval,) = await kernel.processes.approvals()
    inspector = SimulatedInspector(principal=INSPECTOR, threshold=1.01)  # never convinced
    assert await inspector.answer(kernel, approval) is False
    done = await kernel.processes.wait(info.pid, timeout=WAIT)
    assert done.state is ProcessState.DONE, done.error
    (outcome,) = done.output["hazardous"]
    assert outcome == {"bin": HAZARD_BIN, "p": outcome["p"], "outcome": "approval_denied"}
    assert all(not r.hazard for r in scenario.fleet.receipts.values())  # type: ignore[attr-defined]


async def test_a_restart_while_waiting_dispatches_nothing_twice(
    kernos_settings: Settings, city: tuple[Kernel, CityScenario]
) -> None:
    kernel, scenario = city
    await kernel.events.publish(
        Event(
            topic=TOPIC,
            tenant="default",
            source="edge",
            id="h",
            data=reading(HAZARD_BIN, 0.95, 6 * 3600.0, hazard=True),
        )
    )
    info = await kernel.processes.spawn(AGENT, {"day": 0}, principal=ADMIN)
    info = await kernel.processes.wait(info.pid, timeout=WAIT, until=SETTLED)
    assert info.state is ProcessState.WAITING, info.error
    await kernel.stop()

    # The same city (fleet, board, planner) on a restarted kernel: install again, approve.
    again = Kernel(kernos_settings, plugins=PluginManager(entry_points=False), clock=kernel.clock)
    await again.start()
    try:
        await install(again, replace(scenario, bus=again.events), by=ADMIN)
        (approval,) = await again.processes.approvals()
        inspector = SimulatedInspector(principal=INSPECTOR, threshold=0.0)
        assert await inspector.answer(again, approval) is True
        done = await again.processes.wait(info.pid, timeout=WAIT)
        assert done.state is ProcessState.DONE, done.error
    finally:
        await again.stop()
    receipts = list(scenario.fleet.receipts.values())  # type: ignore[attr-defined]
    assert [r.hazard for r in receipts] == [False, True]  # the routes went out once
    record = scenario.fleet.sim.step_day()  # type: ignore[attr-defined]
    assert sorted(record.empty_bins.tolist()) == sorted({*receipts[0].emptied, HAZARD_BIN})
