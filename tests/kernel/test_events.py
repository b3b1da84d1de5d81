"""The event bus: topics, idempotent publish, at-least-once delivery, the DLQ, triggers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest
from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.clock import Clock, SimulatedClock
from kernos.kernel.errors import Conflict, InvalidInput, NotFound
from kernos.kernel.events import Event, EventBus, Trigger, check_topic, topic_matches
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import IdentityStore, Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.processes import ProcessState
from kernos.kernel.settings import Settings
from kernos.kernel.stages import PlainAuditSink
from kernos.kernel.storage import migrate
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import AuditRow, EventDeliveryRow, EventRow, ProcessRow

ADMIN = Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)
WAIT = 20  # seconds of real time before a test gives up instead of hanging


def sensor_event(event_id: str = "bin-7-full", **overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "topic": "sensor.bin.fill",
        "tenant": "default",
        "source": "default/admin",
        "data": {"bin": 7, "fill": 0.93},
        "id": event_id,
    }
    fields.update(overrides)
    return Event(**fields)


# -- Topics and records ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("sensor.bin.fill", "sensor.bin.fill", True),
        ("sensor.bin.fill", "sensor.bin.level", False),
        ("sensor.*.fill", "sensor.bin.fill", True),
        ("sensor.*.fill", "sensor.bin.x.fill", False),
        ("sensor.*", "sensor.bin.fill", False),
        ("sensor.*", "sensor", False),
        ("*", "sensor", True),
        ("sensor.#", "sensor.bin.fill", True),
        ("sensor.#", "sensor", True),
        ("sensor.#", "sensors.bin", False),
        ("#", "process.state", True),
        ("*.bin.#", "sensor.bin", True),
        ("*.bin.#", "sensor.truck.gps", False),
    ],
)
def test_topic_patterns_match_like_mqtt(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize("topic", ["", "Sensor.bin", "sensor..bin", "sensor.bin.", "a b", "a.*"])
def test_bad_topics_are_refused(topic: str) -> None:
    with pytest.raises(InvalidInput, match="topic"):
        check_topic(topic)


@pytest.mark.parametrize("pattern", ["", "sensor.#.fill", "sensor.b*", "Sensor.#", "a..b"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidInput, match="pattern"):
        topic_matches(pattern, "sensor.bin")


def test_events_validate_their_fields() -> None:
    generated = Event(topic="a.b", tenant="default", source="default/admin")
    assert len(generated.id) == 36 and generated.data == {} and generated.time is None
    with pytest.raises(InvalidInput, match="event id"):
        sensor_event(event_id="has space")
    with pytest.raises(InvalidInput, match="JSON object"):
        sensor_event(data=[1, 2])
    with pytest.raises(InvalidInput, match="not JSON"):
        sensor_event(data={"when": object()})
    with pytest.raises(InvalidInput, match="tenant"):
        sensor_event(tenant="No Such")


def test_a_trigger_acts_within_its_principals_tenant() -> None:
    with pytest.raises(InvalidInput, match="principal must belong"):
        Trigger(name="t", pattern="a.#", agent="responder", tenant="other", principal=ADMIN)
    with pytest.raises(InvalidInput, match="pattern"):
        Trigger(name="t", pattern="a.#.b", agent="responder", tenant="default", principal=ADMIN)


# -- The bus on a database ------------------------------------------------------------------


@pytest.fixture
async def database(kernos_settings: Settings) -> AsyncIterator[Database]:
    kernos_settings.home.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate.upgrade, kernos_settings.db_url)
    db = Database(kernos_settings)
    await db.start()
    identity = IdentityStore(db, SimulatedClock())
    await identity.ensure_tenant("default")
    await identity.ensure_tenant("other")
    yield db
    await db.stop()


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
async def make_bus(database: Database, clock: SimulatedClock) -> AsyncIterator[Any]:
    buses: list[EventBus] = []

    async def make(db: Database | None = None, **options: Any) -> EventBus:
        bus = EventBus(db or database, clock, PlainAuditSink(clock), **options)
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()


class Recorder:
    """A handler that fails its first ``failures`` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) <= self.failures:
            raise RuntimeError(f"boom {len(self.events)}")


async def deliveries(db: Database) -> list[EventDeliveryRow]:
    async with db.read() as session:
        return list(await session.scalars(select(EventDeliveryRow).order_by(EventDeliveryRow.id)))


async def audit_events(db: Database) -> list[str]:
    async with db.read() as session:
        return list(await session.scalars(select(AuditRow.event).order_by(AuditRow.seq)))


async def drain(bus: EventBus) -> None:
    await asyncio.wait_for(bus.drain(), WAIT)


async def retry_after(clock: SimulatedClock, seconds: float) -> None:
    """Wait for a delivery to sleep until its retry, then move time ``seconds`` on."""
    await asyncio.wait_for(clock.wait_for_sleepers(1), WAIT)
    await clock.advance(seconds)


async def test_publish_is_durable_idempotent_and_audited(database, make_bus) -> None:
    bus = await make_bus()
    seen = Recorder()
    bus.subscribe("sensor.#", seen, name="recorder")
    first = await bus.publish(sensor_event())
    assert first.time is not None
    again = await bus.publish(sensor_event(data={"bin": 7, "fill": 0.1}, topic="sensor.other"))
    assert again == first  # the stored event, not the second payload
    batch = await bus.publish_many(
        [sensor_event("bin-8-full"), sensor_event("bin-8-full"), sensor_event("bin-7-full")]
    )
    assert [e.id for e in batch] == ["bin-8-full", "bin-8-full", "bin-7-full"]
    await drain(bus)
    assert sorted(e.id for e in seen.events) == ["bin-7-full", "bin-8-full"]
    async with database.read() as session:
        assert len(list(await session.scalars(select(EventRow)))) == 2
    assert [d.status for d in await deliveries(database)] == ["delivered", "delivered"]
    assert await audit_events(database) == ["event.published", "event.published"]
    # Ids are unique per tenant, not across tenants.
    other = await bus.publish(sensor_event(tenant="other"))
    assert other.tenant == "other"
    await drain(bus)
    assert len(seen.events) == 3


async def test_an_unknown_tenant_is_not_found(make_bus) -> None:
    bus = await make_bus()
    with pytest.raises(NotFound, match="tenant 'nowhere'"):
        await bus.publish(sensor_event(tenant="nowhere"))


async def test_subscribers_get_the_topics_and_tenants_they_asked_for(make_bus) -> None:
    bus = await make_bus()
    every, bins, fills, mine = Recorder(), Recorder(), Recorder(), Recorder()
    bus.subscribe("#", every, name="every")
    bus.subscribe("sensor.bin.#", bins, name="bins")
    bus.subscribe("*.*.fill", fills, name="fills")
    bus.subscribe("#", mine, name="mine", tenant="other")
    with pytest.raises(Conflict, match="already registered"):
        bus.subscribe("#", every, name="every")
    with pytest.raises(InvalidInput, match="trigger 'no-spawn'"):
        bus.add_trigger(
            Trigger(
                name="no-spawn", pattern="#", agent="responder", tenant="default", principal=ADMIN
            )
        )
    await bus.publish_many(
        [
            sensor_event("1", topic="sensor.bin.fill"),
            sensor_event("2", topic="sensor.bin"),
            sensor_event("3", topic="sensor.tank.fill"),
            sensor_event("4", topic="process.state", tenant="other"),
        ]
    )
    await drain(bus)

    def ids(recorder: Recorder) -> list[str]:
        return sorted(e.id for e in recorder.events)

    assert ids(every) == ["1", "2", "3", "4"]
    assert ids(bins) == ["1", "2"]
    assert ids(fills) == ["1", "3"]
    assert ids(mine) == ["4"]


async def test_a_failing_handler_is_retried_with_backoff_until_it_succeeds(
    database, make_bus, clock
) -> None:
    bus = await make_bus(backoff_base=1.0, backoff_max=60.0)
    flaky = Recorder(failures=2)
    bus.subscribe("sensor.#", flaky, name="flaky")
    start = clock.now()
    await bus.publish(sensor_event())
    await asyncio.wait_for(clock.wait_for_sleepers(1), WAIT)
    [row] = await deliveries(database)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "RuntimeError: boom 1")
    # First retry after 0.5-1 s (1 s, half of it jitter); nothing happens before that.
    assert 0.5 <= (row.next_attempt_at - start).total_seconds() <= 1.0
    await clock.advance(0.4)
    assert len(flaky.events) == 1
    await clock.advance(0.6)
    await retry_after(clock, 2.0)  # second retry after 1-2 s
    await drain(bus)
    [row] = await deliveries(database)
    assert (row.status, row.attempts) == ("delivered", 3)
    assert [e.id for e in flaky.events] == ["bin-7-full"] * 3  # same id: the idempotency key
    assert await bus.dead_letters() == []


async def test_a_handler_that_keeps_failing_is_dead_lettered_and_can_be_replayed(
    database, make_bus, clock
) -> None:
    bus = await make_bus(max_attempts=3, backoff_base=1.0)
    broken = Recorder(failures=3)
    bus.subscribe("sensor.#", broken, name="broken")
    await bus.publish(sensor_event(correlation_id="run-1"))
    await retry_after(clock, 1.0)
    await retry_after(clock, 2.0)
    await drain(bus)
    [dead] = await bus.dead_letters()
    assert (dead.subscriber, dead.attempts, dead.error) == (
        "handler:broken",
        3,
        "RuntimeError: boom 3",
    )
    assert dead.event.id == "bin-7-full" and dead.event.correlation_id == "run-1"
    assert await bus.dead_letters(tenant="other") == []
    [row] = await deliveries(database)
    assert row.status == "dead"
    assert (await audit_events(database))[-1] == "event.dead_lettered"

    with pytest.raises(NotFound):
        await bus.replay(dead.id, tenant="other", by=ADMIN)
    with pytest.raises(NotFound):
        await bus.replay(dead.id + 1000)
    replayed = await bus.replay(dead.id, by=ADMIN)  # the handler works now
    assert replayed.replayed_by == "default/admin" and replayed.replayed_at is not None
    await drain(bus)
    assert len(broken.events) == 4
    [row] = await deliveries(database)
    assert (row.status, row.attempts) == ("delivered", 1)
    assert await bus.dead_letters() == []
    assert [d.id for d in await bus.dead_letters(include_replayed=True)] == [dead.id]
    assert (await audit_events(database))[-1] == "event.replayed"
    with pytest.raises(Conflict, match="already replayed"):
        await bus.replay(dead.id, by=ADMIN)
    with pytest.raises(InvalidInput):
        await bus.dead_letters(limit=0)


async def test_a_pending_delivery_survives_a_stop_and_is_delivered_once(
    kernos_settings, database, make_bus
) -> None:
    first = await make_bus()
    entered = asyncio.Event()

    async def stuck(event: Event) -> None:
        entered.set()
        await asyncio.Event().wait()  # the kernel goes down during this call

    first.subscribe("sensor.#", stuck, name="worker")
    await first.publish(sensor_event())
    await asyncio.wait_for(entered.wait(), WAIT)
    await first.stop()
    await database.stop()
    [row] = await deliveries_on(kernos_settings)
    assert (row.status, row.attempts) == ("pending", 1)

    # A new database and bus: the delivery waits for a subscriber of its name, then runs once.
    db = Database(kernos_settings)
    await db.start()
    try:
        second = await make_bus(db)
        assert second.subscribers == []
        worker = Recorder()
        second.subscribe("sensor.#", worker, name="worker")
        await drain(second)
        assert [e.id for e in worker.events] == ["bin-7-full"]
        [row] = await deliveries(db)
        assert (row.status, row.attempts) == ("delivered", 2)
        third = await make_bus(db)  # started again: nothing left to deliver
        third.subscribe("sensor.#", worker, name="worker")
        await drain(third)
        assert len(worker.events) == 1
        await second.stop()
        await third.stop()
    finally:
        await db.stop()
        await database.start()  # the fixture stops it


async def deliveries_on(settings: Settings) -> list[EventDeliveryRow]:
    db = Database(settings)
    await db.start()
    try:
        return await deliveries(db)
    finally:
        await db.stop()


async def test_attempts_cut_short_by_stops_count_towards_the_dead_letter_queue(
    kernos_settings, database, make_bus
) -> None:
    first = await make_bus(max_attempts=1)
    entered = asyncio.Event()

    async def crashes(event: Event) -> None:
        entered.set()
        await asyncio.Event().wait()

    first.subscribe("sensor.#", crashes, name="poison")
    await first.publish(sensor_event())
    await asyncio.wait_for(entered.wait(), WAIT)
    await first.stop()

    second = await make_bus(max_attempts=1)
    never = Recorder()
    second.subscribe("sensor.#", never, name="poison")
    await drain(second)
    assert never.events == []
    [dead] = await second.dead_letters()
    assert dead.attempts == 1 and "did not finish" in (dead.error or "")


# -- Triggers through a real kernel ---------------------------------------------------------

SPAWNED: list[str] = []


class ResponderState(TypedDict, total=False):
    event: dict[str, Any]
    handled: str


def build_responder(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def handle(state: ResponderState) -> ResponderState:
        SPAWNED.append(state["event"]["id"])
        return {"handled": state["event"]["id"]}

    graph = StateGraph(ResponderState)
    graph.add_node("handle", handle)
    graph.add_edge(START, "handle")
    graph.add_edge("handle", END)
    return graph.compile()


class EventAgents:
    @hookimpl
    def register_agents(self, register):
        register(AgentSpec(name="responder", description="Handles bins.", build=build_responder))

    @hookimpl
    def register_triggers(self, register):
        register(
            Trigger(
                name="bin-full",
                pattern="sensor.bin.*",
                agent="responder",
                tenant="default",
                principal=ADMIN,
            )
        )


class BadTriggers:
    @hookimpl
    def register_triggers(self, register):
        register("sensor.# -> responder")


@pytest.fixture
async def kernel(kernos_settings: Settings) -> AsyncIterator[Kernel]:
    SPAWNED.clear()
    plugins = PluginManager(entry_points=False)
    plugins.add(EventAgents(), name="event-agents")
    kernel = Kernel(kernos_settings, plugins=plugins)
    await kernel.start()
    yield kernel
    await kernel.stop()


@pytest.fixture
async def kernel_bus(kernel: Kernel) -> AsyncIterator[Any]:
    """A bus on the kernel's parts, the way the kernel builds its own."""
    buses: list[EventBus] = []

    async def make(spawn: Any = None, clock: Clock | None = None, **options: Any) -> EventBus:
        bus = EventBus(
            kernel.db,
            clock or kernel.clock,
            kernel.audit_sink,
            spawn=spawn or kernel.processes.spawn,
            triggers=kernel.plugins.triggers(),
            **options,
        )
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()


async def responders(kernel: Kernel) -> list[ProcessRow]:
    async with kernel.db.read() as session:
        rows = await session.scalars(
            select(ProcessRow).where(ProcessRow.agent == "responder").order_by(ProcessRow.pid)
        )
        return list(rows)


def test_plugins_register_triggers_and_bad_ones_fail_their_plugin() -> None:
    plugins = PluginManager(entry_points=False)
    plugins.add(EventAgents(), name="event-agents")
    plugins.add(BadTriggers(), name="bad-triggers")
    [trigger] = plugins.triggers()
    assert (trigger.name, trigger.plugin) == ("bin-full", "event-agents")
    bad = next(i for i in plugins.infos() if i.name == "bad-triggers")
    assert bad.status == "failed" and "expects Trigger" in (bad.error or "")


async def test_a_trigger_spawns_its_agent_once_per_event(kernel, kernel_bus) -> None:
    bus = await kernel_bus()
    assert [t.name for t in bus.triggers] == ["bin-full"]
    event = await bus.publish(sensor_event())
    await bus.publish(sensor_event())  # published twice: still one process
    await bus.publish(sensor_event("truck-1", topic="sensor.truck.gps"))  # no match
    await bus.publish(sensor_event("bin-9", correlation_id="city-run-3"))
    await drain(bus)
    first, second = await responders(kernel)
    done = await kernel.processes.wait(first.pid, timeout=WAIT)
    assert done.state is ProcessState.DONE, done.error
    assert done.owner == "admin" and done.correlation_id == "bin-7-full"
    assert done.input == {"event": event.as_dict()}
    assert done.output["handled"] == "bin-7-full"
    assert second.correlation_id == "city-run-3"
    rows = await deliveries(kernel.db)
    assert [(r.subscriber, r.status, r.pid) for r in rows] == [
        ("trigger:bin-full", "delivered", first.pid),
        ("trigger:bin-full", "delivered", second.pid),
    ]

    # Redelivered as if the kernel had stopped after the spawn committed but before the
    # delivery recorded its pid: the spawn key hands the next bus that same process.
    def forget_pid(session: Any) -> None:
        row = session.get(EventDeliveryRow, rows[0].id)
        row.status, row.pid, row.delivered_at = "pending", None, None

    await kernel.db.write(forget_pid)
    again = await kernel_bus()
    await drain(again)
    assert [p.pid for p in await responders(kernel)] == [first.pid, second.pid]
    assert (await deliveries(kernel.db))[0].pid == first.pid
    await kernel.processes.wait(second.pid, timeout=WAIT)
    assert sorted(SPAWNED) == ["bin-7-full", "bin-9"]


async def test_a_spawn_interrupted_after_its_commit_is_not_repeated(kernel, kernel_bus) -> None:
    calls: list[str] = []

    async def spawn_then_fail(agent: str, input: Any = None, **kwargs: Any) -> Any:
        info = await kernel.processes.spawn(agent, input, **kwargs)
        calls.append(agent)
        if len(calls) == 1:
            raise ConnectionError("lost the kernel after the spawn committed")
        return info

    clock = SimulatedClock(kernel.clock.now())
    bus = await kernel_bus(spawn=spawn_then_fail, clock=clock, backoff_base=1.0)
    bus.add_trigger(
        Trigger(
            name="alarm",
            pattern="alarm.#",
            agent="responder",
            tenant="default",
            principal=ADMIN,
            input_map=lambda e: {"event": {"id": e.id, "level": e.data["level"]}},
        )
    )
    await bus.publish(
        Event(topic="alarm.fire", tenant="default", source="sim", id="a1", data={"level": 3})
    )
    await retry_after(clock, 1.0)
    await drain(bus)
    [process] = await responders(kernel)
    assert process.input == {"event": {"id": "a1", "level": 3}}
    # The retry asked again; the spawn key gave it the process the first attempt committed.
    assert calls == ["responder", "responder"]
    [row] = [r for r in await deliveries(kernel.db) if r.subscriber == "trigger:alarm"]
    assert (row.status, row.attempts, row.pid) == ("delivered", 2, process.pid)
    with pytest.raises(Conflict):
        bus.add_trigger(
            Trigger(name="alarm", pattern="#", agent="responder", tenant="default", principal=ADMIN)
        )


async def test_the_kernels_own_bus_runs_plugin_triggers(kernel: Kernel) -> None:
    reading = {"bin": 17, "level": 0.93, "temp_c": 12.0, "voc_ppm": 1.0, "ts": 3600.0}
    event = Event(
        id="bin-17-full", topic="sensor.bin.fill", tenant="default", source="test", data=reading
    )
    await kernel.events.publish(event)
    await kernel.events.publish(event)  # idempotent: the same id again
    await kernel.events.drain()
    [row] = await responders(kernel)
    done = await kernel.processes.wait(row.pid, timeout=30)
    assert done.state.value == "done", done.error
    assert done.correlation_id == "bin-17-full"
    assert SPAWNED == ["bin-17-full"]
