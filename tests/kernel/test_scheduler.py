"""The LLM scheduler: dispatch, order, backpressure, timeouts, retries, breakers, fallbacks."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from kernos.kernel.clock import SimulatedClock, SystemClock
from kernos.kernel.errors import BackendError, BackendOverloaded, NotFound, RateLimited
from kernos.kernel.llm import BackendConfig, ChatRequest
from kernos.kernel.scheduling import BACKEND_TIMEOUT, BREAKER_OPEN, LLMScheduler
from kernos.kernel.telemetry import Telemetry

from .scheduler_standin import Action, StandIn, settle


def config(name: str = "main", **fields: Any) -> BackendConfig:
    return BackendConfig(name=name, model="m-1", **fields)


def ask(tag: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": tag}])


def scheduler(*backends: StandIn, clock: Any = None, **options: Any) -> LLMScheduler:
    return LLMScheduler(
        {b.name: b for b in backends},
        clock=clock or SystemClock(),
        rng=random.Random(7),
        **options,
    )


async def drive(clock: SimulatedClock, task: asyncio.Task[Any], *, step: float = 0.25) -> Any:
    """Move simulated time in small steps until ``task`` is done; return its result."""
    for _ in range(4_000):
        if task.done():
            return task.result()
        await clock.advance(step)
        await settle(5)
    raise AssertionError("the task never finished")


async def drain(backend: StandIn, tasks: list[asyncio.Task[Any]]) -> None:
    """Open gates one at a time until every task is done."""
    for _ in range(10_000):
        if all(t.done() for t in tasks):
            return
        backend.open_gate()
        await settle()
    raise AssertionError("calls never finished")


# -- dispatch ---------------------------------------------------------------------------------


async def test_a_free_slot_dispatches_in_the_callers_own_task() -> None:
    backend = StandIn(config(concurrency=4))
    sched = scheduler(backend)
    response = await sched.chat(ask("hi"), backend="main", tenant="t1", pid=3)
    assert response.backend == "main" and response.message["content"] == "re: hi"
    assert backend.tasks == [asyncio.current_task()]  # no task hop on the way
    snap = sched.snapshot()["main"]
    assert (snap.inflight, snap.queue_depth, snap.served) == (0, 0, 1)


async def test_concurrency_is_used_in_full_and_never_exceeded() -> None:
    backend = StandIn(config(concurrency=8), gated=True)
    sched = scheduler(backend)
    tasks = [asyncio.create_task(sched.chat(ask(f"r{i}"), backend="main")) for i in range(20)]
    await settle()
    # All eight slots are taken at once, the rest wait; no timer is involved.
    assert backend.active == 8 and sched.snapshot()["main"].queue_depth == 12
    await drain(backend, tasks)
    assert backend.max_active == 8
    assert sorted(backend.answered) == sorted(f"r{i}" for i in range(20))
    assert sched.snapshot()["main"].inflight == 0


async def test_unknown_backend_is_not_found() -> None:
    sched = scheduler(StandIn(config()))
    with pytest.raises(NotFound, match="no LLM backend named 'other'"):
        await sched.chat(ask("x"), backend="other")
    with pytest.raises(NotFound, match="falls back to 'ghost'"):
        scheduler(StandIn(config(fallback=["ghost"])))


# -- order ------------------------------------------------------------------------------------


async def _order(
    sched: LLMScheduler, backend: StandIn, queued: list[tuple[str, int, str, int]]
) -> list[str]:
    """Occupy the one slot, queue ``(tag, priority, tenant, pid)`` in order, then release."""
    tasks = [asyncio.create_task(sched.chat(ask("first"), backend="main"))]
    await settle()
    for tag, priority, tenant, pid in queued:
        tasks.append(
            asyncio.create_task(
                sched.chat(ask(tag), backend="main", priority=priority, tenant=tenant, pid=pid)
            )
        )
        await settle(2)
    await drain(backend, tasks)
    assert backend.calls[0] == "first"
    return backend.calls[1:]


async def test_higher_priority_goes_first() -> None:
    backend = StandIn(config(concurrency=1), gated=True)
    sched = scheduler(backend, aging_per_second=0.0)
    order = await _order(
        sched, backend, [("low", 0, "t", 1), ("high", 5, "t", 2), ("mid", 1, "t", 3)]
    )
    assert order == ["high", "mid", "low"]


async def test_a_flooding_tenant_does_not_crowd_out_a_quiet_one() -> None:
    backend = StandIn(config(concurrency=1), gated=True)
    sched = scheduler(backend, aging_per_second=0.0)
    flood = [(f"a{i}", 0, "acme", 100 + i) for i in range(10)]
    quiet = [(f"b{i}", 0, "beta", 200 + i) for i in range(3)]
    order = await _order(sched, backend, flood + quiet)
    # The quiet tenant's three requests, queued after all ten of the flood, alternate with it.
    assert [i for i, tag in enumerate(order) if tag.startswith("b")] == [1, 3, 5]
    assert [t for t in order if t.startswith("a")] == [f"a{i}" for i in range(10)]


async def test_within_a_tenant_processes_share_fairly() -> None:
    backend = StandIn(config(concurrency=1), gated=True)
    sched = scheduler(backend, aging_per_second=0.0)
    busy = [(f"p1-{i}", 0, "acme", 1) for i in range(8)]
    other = [(f"p2-{i}", 0, "acme", 2) for i in range(2)]
    order = await _order(sched, backend, busy + other)
    assert [i for i, tag in enumerate(order) if tag.startswith("p2")] == [1, 3]


async def _aging_run(aging: float) -> list[str]:
    """One slot; a high-priority request arrives every second (the service time), and one
    low-priority request waits from the start."""
    clock = SimulatedClock()
    backend = StandIn(config(concurrency=1), gated=True)
    sched = scheduler(backend, clock=clock, aging_per_second=aging)

    def submit(tag: str, priority: int, pid: int) -> asyncio.Task[Any]:
        return asyncio.create_task(
            sched.chat(ask(tag), backend="main", priority=priority, tenant="t", pid=pid)
        )

    tasks = [submit("h0", 5, 1)]
    await settle()
    tasks.append(submit("low", 0, 2))
    for k in range(1, 20):
        tasks.append(submit(f"h{k}", 5, 1))
        await settle()
        await clock.advance(1.0)
        backend.open_gate()
        await settle()
    await drain(backend, tasks)
    return backend.calls


async def test_aging_lets_a_low_priority_request_through_a_steady_high_priority_stream() -> None:
    starved = await _aging_run(0.0)
    assert starved.index("low") == 20  # without aging it waits for the whole stream
    aged = await _aging_run(1.0)
    # One level per second: 5 levels below, it runs about 6 s in, not after 20.
    assert 5 <= aged.index("low") <= 8


# -- backpressure and cancellation -------------------------------------------------------------


async def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    backend = StandIn(config(concurrency=1, queue_limit=2), gated=True)
    sched = scheduler(backend)
    tasks = [asyncio.create_task(sched.chat(ask(f"r{i}"), backend="main")) for i in range(3)]
    await settle()
    with pytest.raises(BackendOverloaded) as refused:
        await sched.chat(ask("one too many"), backend="main")
    assert isinstance(refused.value, RateLimited) and refused.value.code == "backend_overloaded"
    assert refused.value.retry_after > 0 and "queue_limit" in str(refused.value)
    assert "one too many" not in backend.calls
    assert sched.snapshot()["main"].rejected == 1
    await drain(backend, tasks)


async def test_cancelling_a_waiter_or_a_running_call_frees_everything() -> None:
    backend = StandIn(config(concurrency=1), gated=True)
    sched = scheduler(backend)
    running = asyncio.create_task(sched.chat(ask("running"), backend="main"))
    await settle()
    waiting = asyncio.create_task(sched.chat(ask("waiting"), backend="main"))
    behind = asyncio.create_task(sched.chat(ask("behind"), backend="main"))
    await settle()
    assert sched.snapshot()["main"].queue_depth == 2
    waiting.cancel()
    await settle()
    assert waiting.cancelled() and sched.snapshot()["main"].queue_depth == 1
    running.cancel()  # the in-flight call's slot goes to the next waiter
    await settle()
    assert running.cancelled() and backend.calls == ["running", "behind"]
    await drain(backend, [behind])
    assert behind.result().message["content"] == "re: behind"
    snap = sched.snapshot()["main"]
    assert (snap.inflight, snap.queue_depth) == (0, 0)
    assert "waiting" not in backend.calls


# -- timeouts, retries, breakers, fallbacks -------------------------------------------------


async def test_a_timeout_is_retried_after_backoff_and_then_succeeds() -> None:
    clock = SimulatedClock()
    backend = StandIn(config(timeout_seconds=5, max_retries=2), script=["hang"])
    sched = scheduler(backend, clock=clock, backoff_base=1.0)
    task = asyncio.create_task(sched.chat(ask("slow"), backend="main"))
    response = await drive(clock, task)
    assert response.backend == "main" and backend.calls == ["slow", "slow"]
    assert sched.snapshot()["main"].failed == 1
    assert 5.0 <= clock.monotonic() <= 7.0  # the timeout plus at most one second of backoff


async def test_retryable_errors_are_retried_and_non_retryable_ones_are_not() -> None:
    clock = SimulatedClock()
    flaky = StandIn(
        config(max_retries=3),
        script=[BackendError("503", retryable=True), BackendError("503", retryable=True)],
    )
    sched = scheduler(flaky, clock=clock)
    assert (await drive(clock, asyncio.create_task(sched.chat(ask("x"), backend="main")))).backend
    assert len(flaky.calls) == 3

    bad = StandIn(config("bad", max_retries=3), script=[BackendError("400", retryable=False)])
    sched = scheduler(bad, clock=clock)
    with pytest.raises(BackendError, match="400") as failed:
        await sched.chat(ask("y"), backend="bad")
    assert not failed.value.retryable and bad.calls == ["y"]


async def test_retries_give_up_with_the_last_error() -> None:
    clock = SimulatedClock()
    backend = StandIn(
        config(max_retries=1, timeout_seconds=2),
        script=["hang", BackendError("502", retryable=True)],
    )
    sched = scheduler(backend, clock=clock)
    task = asyncio.create_task(sched.chat(ask("x"), backend="main"))
    with pytest.raises(BackendError, match="502"):
        await drive(clock, task)
    assert len(backend.calls) == 2

    task = asyncio.create_task(sched.chat(ask("y"), backend="main"))
    backend.script = ["hang", "hang"]
    with pytest.raises(BackendError, match="did not answer within 2 s") as timed_out:
        await drive(clock, task)
    assert timed_out.value.code == BACKEND_TIMEOUT and timed_out.value.retryable


async def test_the_breaker_opens_fails_fast_half_opens_and_closes() -> None:
    clock = SimulatedClock()
    down = BackendError("connection refused", retryable=True)
    backend = StandIn(config(max_retries=0), script=[down, down, down])
    sched = scheduler(backend, clock=clock, breaker_threshold=3, breaker_cooldown=10.0)
    for _ in range(3):
        with pytest.raises(BackendError, match="refused"):
            await sched.chat(ask("x"), backend="main")
    assert sched.snapshot()["main"].breaker == "open"
    with pytest.raises(BackendError, match="tried again in 10.0 s") as fast:
        await sched.chat(ask("fast"), backend="main")
    assert fast.value.code == BREAKER_OPEN and fast.value.retryable
    assert len(backend.calls) == 3  # failed fast: the backend saw nothing
    await clock.advance(10.0)
    assert sched.snapshot()["main"].breaker == "half_open"
    # One probe at a time: while it runs, others fail fast.
    backend.gated = True
    probe = asyncio.create_task(sched.chat(ask("probe"), backend="main"))
    await settle()
    with pytest.raises(BackendError) as meanwhile:
        await sched.chat(ask("meanwhile"), backend="main")
    assert meanwhile.value.code == BREAKER_OPEN
    backend.open_gate()
    assert (await probe).backend == "main"
    assert sched.snapshot()["main"].breaker == "closed"
    backend.gated = False
    assert (await sched.chat(ask("after"), backend="main")).backend == "main"


async def test_a_streamed_probe_closes_the_breaker_at_its_first_chunk() -> None:
    clock = SimulatedClock()
    down = BackendError("connection refused", retryable=True)
    backend = StandIn(config(max_retries=0), script=[down, down])
    sched = scheduler(backend, clock=clock, breaker_threshold=2, breaker_cooldown=5.0)
    for _ in range(2):
        with pytest.raises(BackendError):
            await sched.chat(ask("x"), backend="main")
    await clock.advance(5.0)
    stream = sched.stream(ask("probe"), backend="main")
    first = await anext(stream)  # the probe answered: the server is back
    assert first.content == "one "
    assert sched.snapshot()["main"].breaker == "closed"
    # While the probe's stream is still open, other calls go through instead of failing fast.
    assert (await sched.chat(ask("meanwhile"), backend="main")).backend == "main"
    rest = [chunk.content async for chunk in stream]
    assert "".join(rest) == "two three"
    await sched.aclose()


async def test_a_failed_probe_opens_the_breaker_again() -> None:
    clock = SimulatedClock()
    down = BackendError("503", retryable=True)
    backend = StandIn(config(max_retries=0), script=[down, down, down])
    sched = scheduler(backend, clock=clock, breaker_threshold=2, breaker_cooldown=5.0)
    for _ in range(2):
        with pytest.raises(BackendError):
            await sched.chat(ask("x"), backend="main")
    await clock.advance(5.0)
    with pytest.raises(BackendError, match="503"):
        await sched.chat(ask("probe"), backend="main")
    snap = sched.snapshot()["main"]
    assert snap.breaker == "open" and snap.breaker_retry_in == 5.0


async def test_the_fallback_serves_when_the_primary_fails_and_when_its_breaker_is_open() -> None:
    clock = SimulatedClock()
    down = BackendError("connection refused", retryable=True)
    primary = StandIn(config("primary", max_retries=1, fallback=["secondary"]), script=[down] * 4)
    secondary = StandIn(config("secondary", price_in_per_1k=2.0, price_out_per_1k=4.0))
    sched = scheduler(primary, secondary, clock=clock, breaker_threshold=4)
    for i in range(2):
        task = asyncio.create_task(sched.chat(ask(f"q{i}"), backend="primary"))
        response = await drive(clock, task)
        assert response.backend == "secondary"
        assert sched.cost(response) == pytest.approx((10 * 2.0 + 5 * 4.0) / 1000)
    assert len(primary.calls) == 4 and sched.snapshot()["primary"].breaker == "open"
    # Breaker open: straight to the fallback, the primary sees nothing.
    assert (await sched.chat(ask("q2"), backend="primary")).backend == "secondary"
    assert len(primary.calls) == 4 and secondary.answered == ["q0", "q1", "q2"]


async def test_when_every_backend_fails_the_error_names_them_all() -> None:
    down = BackendError("refused", retryable=True)
    a = StandIn(config("a", max_retries=0, fallback=["b"]), script=[down])
    b = StandIn(config("b", max_retries=0), script=[down])
    sched = scheduler(a, b)
    with pytest.raises(BackendError, match="no LLM backend could answer .*a: refused; b: refused"):
        await sched.chat(ask("x"), backend="a")


async def test_a_full_primary_queue_spills_to_the_fallback() -> None:
    primary = StandIn(config("primary", concurrency=1, queue_limit=0, fallback=["spare"]))
    primary.gated = True
    spare = StandIn(config("spare"))
    sched = scheduler(primary, spare)
    busy = asyncio.create_task(sched.chat(ask("busy"), backend="primary"))
    await settle()
    assert (await sched.chat(ask("spill"), backend="primary")).backend == "spare"
    await drain(primary, [busy])


async def test_under_faults_every_call_is_answered_exactly_once() -> None:
    clock = SimulatedClock()
    rng = random.Random(11)
    script: list[Action] = [
        BackendError("503", retryable=True) if rng.random() < 0.3 else "ok" for _ in range(400)
    ]
    primary = StandIn(
        config("primary", concurrency=4, max_retries=2, fallback=["backup"]), script=script
    )
    backup = StandIn(config("backup", concurrency=2))
    sched = scheduler(primary, backup, clock=clock, breaker_threshold=3, breaker_cooldown=2.0)
    tasks = [
        asyncio.create_task(
            sched.chat(ask(f"r{i}"), backend="primary", tenant=f"t{i % 3}", pid=i % 7)
        )
        for i in range(120)
    ]
    results = []
    for task in tasks:
        results.append(await drive(clock, task))
    assert sorted(r.message["content"] for r in results) == sorted(f"re: r{i}" for i in range(120))
    answered = primary.answered + backup.answered
    assert sorted(answered) == sorted(f"r{i}" for i in range(120))  # none twice, none lost
    assert all(s.inflight == 0 and s.queue_depth == 0 for s in sched.snapshot().values())


# -- streams ----------------------------------------------------------------------------------


async def test_a_stream_holds_its_slot_until_it_ends_or_is_closed() -> None:
    backend = StandIn(config(concurrency=1))
    sched = scheduler(backend)
    chunks = []
    async for chunk in sched.stream(ask("s"), backend="main", tenant="t", pid=1):
        chunks.append(chunk)
        assert sched.snapshot()["main"].inflight == 1
    assert "".join(c.content for c in chunks) == "one two three"
    assert chunks[-1].output_tokens == 3
    assert sched.snapshot()["main"].inflight == 0 and sched.snapshot()["main"].served == 1

    stream = sched.stream(ask("early"), backend="main")
    first = await anext(stream)
    assert first.content == "one " and sched.snapshot()["main"].inflight == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert sched.snapshot()["main"].inflight == 0


async def test_a_stream_is_retried_before_its_first_chunk() -> None:
    clock = SimulatedClock()
    backend = StandIn(config(max_retries=1), script=[BackendError("502", retryable=True)])
    sched = scheduler(backend, clock=clock)

    async def read() -> str:
        return "".join([c.content async for c in sched.stream(ask("s"), backend="main")])

    assert await drive(clock, asyncio.create_task(read())) == "one two three"
    assert backend.calls == ["s", "s"]


# -- accounting and shutdown --------------------------------------------------------------------


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


async def test_each_call_is_accounted_by_model_backend_and_tenant() -> None:
    reader = InMemoryMetricReader()
    telemetry = Telemetry(metric_readers=[reader])
    backend = StandIn(config(price_in_per_1k=1.0, price_out_per_1k=3.0))
    sched = LLMScheduler({"main": backend}, clock=SystemClock(), telemetry=telemetry)
    await sched.chat(ask("x"), backend="main", tenant="acme", pid=42)
    tokens = {
        p.attributes["gen_ai.token.type"]: p for p in _points(reader, "gen_ai.client.token.usage")
    }
    assert tokens["input"].sum == 10 and tokens["output"].sum == 5
    attrs = tokens["input"].attributes
    assert attrs["kernos.backend"] == "main" and attrs["kernos.tenant"] == "acme"
    assert attrs["gen_ai.request.model"] == "m-1"
    assert "kernos.pid" not in attrs  # per process: the process record, not a series each
    [cost] = _points(reader, "kernos.inference.cost")
    assert cost.value == pytest.approx((10 * 1.0 + 5 * 3.0) / 1000)
    [wait] = _points(reader, "kernos.scheduler.queue_wait")
    assert wait.count == 1
    [duration] = _points(reader, "gen_ai.client.operation.duration")
    assert duration.count == 1
    outcomes = {
        p.attributes["outcome"]: p.value for p in _points(reader, "kernos.scheduler.attempts")
    }
    assert outcomes == {"ok": 1}
    telemetry.shutdown()


async def test_aclose_fails_waiters_and_closes_backends() -> None:
    backend = StandIn(config(concurrency=1), gated=True)
    sched = scheduler(backend)
    running = asyncio.create_task(sched.chat(ask("running"), backend="main"))
    await settle()
    waiting = asyncio.create_task(sched.chat(ask("waiting"), backend="main"))
    await settle()
    await sched.aclose()
    with pytest.raises(Exception, match="shut down"):
        await waiting
    assert backend.closed
    with pytest.raises(Exception, match="shut down"):
        await sched.chat(ask("late"), backend="main")
    backend.open_gate()
    await running
