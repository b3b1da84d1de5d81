"""``kernos demo waste``: the simulated city under a tuned static plan and under Kernos.

Both arms run the same city on the same seeds (common random numbers: the same waste, events,
hazardous incidents, sensor noise and faults), count the same days (the warm-up excluded) and
route with the same OR-Tools setup, fleet and capacity:

- **baseline**: ``experiment.run`` of the static plan (per-bin intervals tuned from last
  year's history at overflow tolerance ``alpha``, balanced visit days), no kernel;
- **kernos**: a real :class:`~kernos.kernel.kernel.Kernel` on a temporary ``KERNOS_HOME``
  (SQLite, no API server) on a simulated clock. Per day: the night's readings go through the
  edge filter and are published as ``sensor.bin.fill`` events (validated by their schema); a
  ``city.day`` event triggers the dispatcher, whose every step is a syscall (authorized,
  audited, journalled); hazardous pickups wait for the simulated inspector; the fleet empties
  the bins in the simulation; the day closes and its readings follow;
- **brackets** (optional): the perfect-information oracle and sensors without forecasting,
  by ``experiment.run``.

The baseline arms run in a worker process while the kernel arm runs here (two cores).
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kernos.kernel.errors import KernosError
from kernos.plugins.sensors.params import CityParams

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Kernel-clock time of simulation day 0, 00:00."""
METRICS = (
    "route_km",
    "overflow_incidents",
    "pickups",
    "mean_fill_at_pickup",
    "hazard_escalations",
    "hazard_approved",
    "mean_decision_min",
    "raw_readings",
    "forwarded_readings",
    "audit_records",
    "wall_s",
)
"""What each arm reports (``None`` where an arm has no such thing)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoConfig:
    """What ``kernos demo waste`` runs."""

    days: int = 180
    bins: int | None = None
    """Bins in the city (default: the pinned 300)."""
    trucks: int | None = None
    """Trucks (default: the pinned 6)."""
    seed: int = 1
    """First replication's seed (replication ``i`` uses ``seed + i``)."""
    city_seed: int = 1
    replications: int = 1
    alpha: float = 0.1
    """The static plan's overflow tolerance."""
    theta: float = 0.1
    """Kernos's risk threshold."""
    brackets: bool = False
    inspector_threshold: float = 0.9
    inspector_delay_min: float = 10.0

    def params(self) -> CityParams:
        """The city's parameters: the pinned defaults with ``bins`` and ``trucks``."""
        params = CityParams()
        if self.bins is not None:
            params = replace(params, n_bins=self.bins)
        if self.trucks is not None:
            params = replace(params, n_trucks=self.trucks)
        return params


def night_record(sim: Any) -> Any:
    """Today's record up to shift start, for the night's readings: nothing arrives or is
    emptied before then, so the level is the day's start level; unlike the experiment's
    night record it carries today's hazardous incidents, so the night's readings show them."""
    from dataclasses import replace as with_fields

    import numpy as np

    from kernos.plugins.routing.experiment import _night_record

    record = _night_record(sim)
    start = sim.fill.hazard_start_h[sim.day]
    present = sim.hazard  # at shift start: carried over (from 0 h) or started tonight
    hazard_from = np.where(present, np.where(np.isfinite(start), start, 0.0), np.inf)
    return with_fields(record, hazard_from_h=hazard_from)


def _result_dict(result: Any) -> dict[str, Any]:
    return {
        "route_km": round(result.route_km, 3),
        "overflow_incidents": result.overflow_incidents,
        "pickups": result.pickups,
        "mean_fill_at_pickup": round(result.mean_fill_at_pickup, 4),
        "hazard_escalations": None,
        "hazard_approved": None,
        "mean_decision_min": None,
        "raw_readings": None,
        "forwarded_readings": None,
        "audit_records": None,
        "wall_s": round(result.wall_s, 2),
        "days": result.days,
        "seed": result.seed,
        "param": result.param,
    }


def run_static_arms(
    params: CityParams, city_seed: int, seed: int, days: int, specs: Sequence[tuple[str, float]]
) -> list[dict[str, Any]]:
    """The arms without a kernel (``(kind, param)`` each) on one replication; picklable, for
    a worker process."""
    from kernos.plugins.routing.experiment import PolicySpec, make_setup, run

    setup = make_setup(params, city_seed=city_seed, seed=seed, days=days)
    return [_result_dict(run(PolicySpec(kind=kind, param=param), setup)) for kind, param in specs]


async def run_kernos_arm(
    config: DemoConfig, seed: int, *, on_day: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """The Kernos arm on one replication, through a real kernel on a temporary home."""
    from sqlalchemy import func, select

    from kernos.edge.filter import EdgeFilter, FilterParams
    from kernos.edge.sources import day_columns
    from kernos.kernel.clock import SimulatedClock
    from kernos.kernel.events import Event
    from kernos.kernel.identity import Principal, PrincipalKind
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.pluginmanager import PluginManager
    from kernos.kernel.processes import SETTLED, ProcessState
    from kernos.kernel.settings import load_settings
    from kernos.kernel.storage.models import AuditRow
    from kernos.plugins.city import DAY_TOPIC, INSPECTOR
    from kernos.plugins.city.board import BinBoard
    from kernos.plugins.city.fleet import SimulatedFleet
    from kernos.plugins.city.planner import Planner
    from kernos.plugins.city.scenario import CityScenario, SimulatedInspector, install, uninstall
    from kernos.plugins.routing.experiment import make_setup
    from kernos.plugins.routing.policies import PRIZE_M
    from kernos.plugins.sensors import TOPIC
    from kernos.plugins.sensors.readings import SensorModel
    from kernos.plugins.sensors.sim import Simulation

    started = time.perf_counter()
    params = config.params()
    days = config.days
    setup = make_setup(params, city_seed=config.city_seed, seed=seed, days=days)
    sim = Simulation(setup.city, params, seed, days=days + 5)
    sensors = SensorModel(setup.city, params, seed, days=days + 5)
    fleet = SimulatedFleet(sim, speed_kmh=params.speed_kmh)
    edge = EdgeFilter(FilterParams.for_city(params))
    home = tempfile.mkdtemp(prefix="kernos-demo-")
    tenant = "default"
    admin = Principal(tenant=tenant, name="admin", kind=PrincipalKind.PERSON)
    inspector = SimulatedInspector(
        principal=Principal(tenant=tenant, name=INSPECTOR, kind=PrincipalKind.PERSON),
        threshold=config.inspector_threshold,
        delay_min=config.inspector_delay_min,
    )
    settings = load_settings(
        home=home,
        database_url=f"sqlite:///{home}/kernos.db",
        mqtt_url=None,
        load_plugins=None,
        sqlite_synchronous="NORMAL",  # a throw-away database
    )
    clock = SimulatedClock(EPOCH)
    kernel = Kernel(settings, plugins=PluginManager(entry_points=False), clock=clock)
    shift_s = params.shift_start_h * 3600.0

    async def publish(batch: Any, *, before: bool) -> None:
        events = []
        for columns in day_columns(batch):
            hour = (columns.ts[0] / 3600.0) % 24.0 if columns.ts else 0.0
            if (hour < params.shift_start_h) != before:
                continue
            for fwd in edge.process_columns(
                columns.bins, columns.ts, columns.level, columns.temp_c, columns.voc_ppm
            ):
                events.append(
                    Event(
                        topic=TOPIC,
                        tenant=tenant,
                        source="edge-sim",
                        id=f"sim-{fwd.bin}-{int(fwd.ts)}",
                        data=dict(fwd.payload()),
                    )
                )
        if events:
            await kernel.events.publish_batch(events)

    await kernel.start()
    try:
        scenario = CityScenario(
            tenant=tenant,
            board=BinBoard(tenant),
            planner=Planner(setup, theta=config.theta, prize_m=PRIZE_M),
            fleet=fleet,
            bus=kernel.events,
            clock=clock,
            epoch=EPOCH,
            shift_start_h=params.shift_start_h,
        )
        await install(kernel, scenario, by=admin)
        for day in range(days):
            await clock.advance_to(EPOCH + timedelta(days=day, seconds=shift_s))
            await publish(sensors.readings(night_record(sim)), before=True)
            event_id = f"city-day-{day}"
            await kernel.events.publish(
                Event(
                    topic=DAY_TOPIC,
                    tenant=tenant,
                    source="city-sim",
                    id=event_id,
                    data={"day": day},
                )
            )
            await kernel.events.drain()
            info = await kernel.processes.by_spawn_key(
                f"trigger:{tenant}:city-day-{tenant}:{event_id}", tenant=tenant
            )
            if info is None:
                raise KernosError(f"day {day}: the city.day trigger spawned no dispatcher")
            while True:
                info = await kernel.processes.wait(info.pid, timeout=600, until=SETTLED)
                if info.state is not ProcessState.WAITING:
                    break
                pending = [a for a in await kernel.processes.approvals() if a.pid == info.pid]
                await clock.advance(inspector.delay_min * 60.0)
                for approval in pending:
                    await inspector.answer(kernel, approval)
            if info.state is not ProcessState.DONE:
                raise KernosError(
                    f"day {day}: dispatcher process {info.pid} ended {info.state.value}: "
                    f"{(info.error or {}).get('message', 'no error recorded')}"
                )
            record = sim.step_day()
            await publish(sensors.readings(record), before=False)
            if on_day is not None:
                on_day(day)
        summary = sim.summary()
        km = sum(r.km for r in fleet.receipts.values() if r.day >= params.warmup_days)
        async with kernel.db.read() as session:
            audit = int(await session.scalar(select(func.count()).select_from(AuditRow)) or 0)
        uninstall(kernel)
    finally:
        await kernel.stop()
        shutil.rmtree(home, ignore_errors=True)
    minutes = [m for _, _, m in inspector.decisions]
    return {
        "route_km": round(km, 3),
        "overflow_incidents": int(summary["overflow_bin_days"]),
        "pickups": int(summary["collections"]),
        "mean_fill_at_pickup": round(float(summary["mean_fill_at_emptying"]), 4),
        "hazard_escalations": len(inspector.decisions),
        "hazard_approved": sum(1 for _, ok, _ in inspector.decisions if ok),
        "mean_decision_min": round(sum(minutes) / len(minutes), 2) if minutes else None,
        "raw_readings": edge.stats.raw,
        "forwarded_readings": edge.stats.forwarded,
        "audit_records": audit,
        "wall_s": round(time.perf_counter() - started, 2),
        "days": int(summary["days"]),
        "seed": seed,
        "param": config.theta,
    }


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over replications, with 95 % t-interval half-widths under ``ci95``."""
    from kernos.plugins.routing.experiment import estimate

    out: dict[str, Any] = {}
    ci: dict[str, float | None] = {}
    for metric in METRICS:
        values = [float(r[metric]) for r in runs if r.get(metric) is not None]
        if not values:
            out[metric] = None
            ci[metric] = None
            continue
        est = estimate(values)
        out[metric] = int(est.mean) if est.mean.is_integer() else round(est.mean, 4)
        ci[metric] = None if math.isnan(est.half_width) else round(est.half_width, 4)
    out["days"] = runs[0]["days"]
    out["param"] = runs[0]["param"]
    out["ci95"] = ci
    out["runs"] = runs
    return out


async def run_demo(
    config: DemoConfig, *, on_day: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Every arm over every replication; the JSON ``kernos demo waste --json`` prints."""
    import multiprocessing

    specs: list[tuple[str, str, float]] = [("baseline", "static", config.alpha)]
    if config.brackets:
        specs += [("oracle", "oracle", 0.0), ("sensors", "sensors", 0.9)]
    seeds = [config.seed + i for i in range(config.replications)]
    params = config.params()
    started = time.perf_counter()
    kernos_runs: list[dict[str, Any]] = []
    # The kernel arm is the long one: the worker yields the CPU to it when they compete.
    with ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=os.nice, initargs=(5,)
    ) as pool:
        futures: list[Future[list[dict[str, Any]]]] = [
            pool.submit(
                run_static_arms,
                params,
                config.city_seed,
                s,
                config.days,
                [(kind, param) for _, kind, param in specs],
            )
            for s in seeds
        ]
        for s in seeds:
            kernos_runs.append(await run_kernos_arm(config, s, on_day=on_day))
        static_runs = [await asyncio.wrap_future(f) for f in futures]
    out: dict[str, Any] = {}
    for i, (arm, _, _) in enumerate(specs):
        out[arm] = _aggregate([runs[i] for runs in static_runs])
        if arm == "baseline":
            out["kernos"] = _aggregate(kernos_runs)
    out["config"] = {
        "days": config.days,
        "bins": params.n_bins,
        "trucks": params.n_trucks,
        "seeds": seeds,
        "city_seed": config.city_seed,
        "warmup_days": params.warmup_days,
        "alpha": config.alpha,
        "theta": config.theta,
    }
    out["wall_s"] = round(time.perf_counter() - started, 2)
    return out


__all__ = ["EPOCH", "METRICS", "DemoConfig", "run_demo", "run_kernos_arm", "run_static_arms"]
