"""The LLM scheduler: per-backend slots, a fair wait queue, retries, breakers, fallbacks.

Every call runs in its caller's own task (one asyncio task per request, async I/O only: no
thread pool caps what a continuous-batching server sees). When its backend has a free slot
(``in flight < concurrency``) the call goes straight through, with no task hop and no sleep;
otherwise it waits on its own future in the backend's ``FairQueue``, and whoever releases a
slot hands it to the next waiter at once (never a timer, never polling). The queue's order —
priority bands with aging, then fair share across tenants, then across processes — is
documented in ``kernos.kernel.scheduling.queue``.

Each attempt has ``timeout_seconds`` (kernel clock). A retryable ``BackendError`` or a timeout
is retried up to ``max_retries`` times after a backoff with full jitter (kernel clock, seeded
RNG injectable); a non-retryable one is raised at once. Each backend has a circuit breaker
(``kernos.kernel.scheduling.breaker``); an open breaker fails fast. Once a backend's retries
are spent, its breaker is open, or its queue is full, the call moves along the backend's
``fallback`` chain; the answer's ``ChatResponse.backend`` names who served it. A queue beyond
``queue_limit`` waiters refuses at once with ``BackendOverloaded`` and a ``retry_after``
estimated from recent service times.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, replace

from kernos.kernel.clock import Clock
from kernos.kernel.errors import BackendError, BackendOverloaded, BackendUnavailable, NotFound
from kernos.kernel.identity import DEFAULT_TENANT
from kernos.kernel.llm import ChatChunk, ChatRequest, ChatResponse, LLMBackend
from kernos.kernel.scheduling.breaker import BreakerState, CircuitBreaker, Ticket
from kernos.kernel.scheduling.lane import BACKEND_TIMEOUT, BREAKER_OPEN, Lane, LaneSnapshot
from kernos.kernel.scheduling.meters import SchedulerMeters
from kernos.kernel.scheduling.queue import Waiter
from kernos.kernel.scheduling.retry import AttemptTimeout, backoff_delay
from kernos.kernel.telemetry import Telemetry

log = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class _Call:
    request: ChatRequest
    priority: int
    tenant: str
    pid: int | None
    since: float
    queue_wait: float = 0.0


class LLMScheduler:
    """Dispatches chat requests to named backends (see the module docstring for the rules).

    ``aging_per_second``: priority levels a waiter gains per second of waiting.
    ``breaker_threshold`` consecutive retryable failures open a backend's breaker for
    ``breaker_cooldown`` seconds. Retry ``n`` (0-based) waits up to
    ``min(backoff_max, backoff_base * 2^n)`` seconds. ``rng`` makes the jitter reproducible.
    The scheduler owns the backends: ``aclose`` closes them.
    """

    def __init__(
        self,
        backends: Mapping[str, LLMBackend],
        *,
        clock: Clock,
        telemetry: Telemetry | None = None,
        aging_per_second: float = 0.5,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 30.0,
        backoff_base: float = 0.25,
        backoff_max: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._closed = False
        self._meters = meters = SchedulerMeters(telemetry)
        self._lanes: dict[str, Lane] = {}
        for name, backend in backends.items():

            def changed(state: BreakerState, name: str = name) -> None:
                meters.breaker(name, state)
                log.warning("LLM backend %s: circuit breaker %s", name, state.value)

            breaker = CircuitBreaker(
                clock, threshold=breaker_threshold, cooldown=breaker_cooldown, on_change=changed
            )
            if telemetry is not None:
                backend.telemetry = telemetry  # client spans and traceparent on its calls
            self._lanes[name] = Lane(backend, breaker=breaker, aging_per_second=aging_per_second)
            meters.capacity(name, self._lanes[name].capacity)
        for lane in self._lanes.values():
            for fallback in lane.config.fallback:
                if fallback not in self._lanes:
                    raise NotFound(
                        f"backend {lane.name!r} falls back to {fallback!r}, which is not "
                        f"configured; configured backends: {', '.join(sorted(self._lanes))}"
                    )

    # -- public API -------------------------------------------------------------------------

    @property
    def backends(self) -> dict[str, LLMBackend]:
        """The backends by name."""
        return {name: lane.backend for name, lane in self._lanes.items()}

    async def chat(
        self,
        request: ChatRequest,
        *,
        backend: str,
        priority: int = 0,
        tenant: str = DEFAULT_TENANT,
        pid: int | None = None,
    ) -> ChatResponse:
        """Answer ``request`` on ``backend`` or its fallbacks.

        Raises ``BackendOverloaded`` when every queue on the chain is full, ``BackendError``
        when no backend could answer (``retryable`` as the failures were), ``NotFound`` for an
        unknown backend.
        """
        call = self._new_call(request, priority=priority, tenant=tenant, pid=pid)
        failures: list[tuple[str, Exception]] = []
        for lane in self._chain(backend):
            try:
                return await self._serve(lane, call)
            except BackendOverloaded as exc:
                failures.append((lane.name, exc))
            except BackendError as exc:
                if not exc.retryable:
                    raise
                failures.append((lane.name, exc))
        raise self._exhausted(failures)

    async def stream(
        self,
        request: ChatRequest,
        *,
        backend: str,
        priority: int = 0,
        tenant: str = DEFAULT_TENANT,
        pid: int | None = None,
    ) -> AsyncIterator[ChatChunk]:
        """Stream the answer as chunks; the slot is held until the stream ends or is closed.

        Retries and fallbacks happen only before the first chunk (a stream that broke after
        it cannot be resumed without repeating text); errors as for ``chat``.
        """
        call = self._new_call(request, priority=priority, tenant=tenant, pid=pid)
        failures: list[tuple[str, Exception]] = []
        for lane in self._chain(backend):
            try:
                opened = await self._open_stream(lane, call)
            except BackendOverloaded as exc:
                failures.append((lane.name, exc))
                continue
            except BackendError as exc:
                if not exc.retryable:
                    raise
                failures.append((lane.name, exc))
                continue
            relay = self._relay(lane, call, *opened)
            try:
                async for chunk in relay:
                    yield chunk
            finally:
                await relay.aclose()  # frees the slot now, not when the generator is collected
            return
        raise self._exhausted(failures)

    def cost(self, response: ChatResponse) -> float:
        """What ``response`` cost at its backend's configured prices (per 1,000 tokens)."""
        lane = self._lanes.get(response.backend)
        if lane is None:
            return 0.0
        return lane.price(response.input_tokens, response.output_tokens)

    def snapshot(self) -> dict[str, LaneSnapshot]:
        """Queue depth, in flight, breaker state and counters per backend."""
        return {name: lane.snapshot() for name, lane in self._lanes.items()}

    def resize(self, backend: str, capacity: int) -> None:
        """Change how many requests ``backend`` may have in flight (for example from the
        server's own load figures); more room dispatches waiters at once."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        lane = self._lane(backend)
        self._meters.capacity(lane.name, capacity - lane.capacity)
        lane.capacity = capacity
        while lane.inflight < lane.capacity and len(lane.queue):
            lane.inflight += 1
            self._meters.inflight(lane.name, 1)
            self._release(lane)

    async def aclose(self) -> None:
        """Refuse new calls, fail the waiting ones, and close the backends."""
        self._closed = True
        for lane in self._lanes.values():
            for waiter in lane.queue.drain():
                self._meters.depth(lane.name, -1)
                if not waiter.future.done():
                    waiter.future.set_exception(_closed_error())
        for lane in self._lanes.values():
            try:
                await lane.backend.aclose()
            except Exception:
                log.exception("LLM backend %s failed to close", lane.name)

    # -- slots ------------------------------------------------------------------------------

    async def _acquire(self, lane: Lane, call: _Call) -> None:
        """Take a slot on ``lane``: at once when one is free, else wait for a hand-over."""
        if self._closed:
            raise _closed_error()
        if lane.inflight < lane.capacity and not len(lane.queue):
            lane.inflight += 1
            self._meters.inflight(lane.name, 1)
            call.queue_wait = 0.0
            return
        if len(lane.queue) >= lane.config.queue_limit:
            lane.rejected += 1
            self._meters.attempt(lane.name, "overloaded")
            raise BackendOverloaded(
                f"LLM backend {lane.name!r} has {len(lane.queue)} requests waiting (its "
                f"queue_limit); retry after {lane.retry_after():.2f} s or send less at once",
                retry_after=lane.retry_after(),
            )
        queued_at = self._clock.monotonic()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = Waiter(
            priority=call.priority,
            tenant=call.tenant,
            pid=call.pid,
            since=call.since,
            future=future,
        )
        lane.queue.push(waiter)
        self._meters.depth(lane.name, 1)
        try:
            await future
        except asyncio.CancelledError:
            if lane.queue.remove(waiter):
                self._meters.depth(lane.name, -1)
            elif future.done() and not future.cancelled() and future.exception() is None:
                self._release(lane)  # a slot was handed over just as the caller gave up
            raise
        call.queue_wait = self._clock.monotonic() - queued_at

    def _release(self, lane: Lane) -> None:
        """Hand the slot to the next waiter, or free it."""
        if lane.inflight <= lane.capacity:
            now = self._clock.monotonic()
            while (waiter := lane.queue.pop(now)) is not None:
                self._meters.depth(lane.name, -1)
                if not waiter.future.done():
                    waiter.future.set_result(None)
                    return
        lane.inflight -= 1
        self._meters.inflight(lane.name, -1)

    # -- attempts ---------------------------------------------------------------------------

    async def _serve(self, lane: Lane, call: _Call) -> ChatResponse:
        """Answer on one backend, with its retries; raises the last failure."""
        for attempt in range(lane.config.max_retries + 1):
            if attempt:
                await self._backoff(attempt - 1)
            self._fail_if_open(lane)
            try:
                return await self._attempt(lane, call)
            except BackendError as exc:
                if not exc.retryable or exc.code == BREAKER_OPEN:
                    raise
                if attempt == lane.config.max_retries:
                    raise
                log.info("LLM backend %s failed (%s); retrying", lane.name, exc)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, lane: Lane, call: _Call) -> ChatResponse:
        await self._acquire(lane, call)
        try:
            ticket = self._admit(lane)
            began = self._clock.monotonic()
            try:
                async with AttemptTimeout(self._clock, lane.config.timeout_seconds):
                    response = await lane.backend.chat(call.request)
            except TimeoutError:
                raise self._failed(lane, ticket, lane.timeout_error()) from None
            except BackendError as exc:
                raise self._failed(lane, ticket, exc) from None
            except BaseException:
                lane.breaker.abandon(ticket)
                raise
            lane.breaker.success(ticket)
            response = replace(response, backend=lane.name)
            self._account(lane, call, response, self._clock.monotonic() - began)
            return response
        finally:
            self._release(lane)

    async def _open_stream(
        self, lane: Lane, call: _Call
    ) -> tuple[AsyncIterator[ChatChunk], ChatChunk | None, Ticket, float]:
        """Start a stream and read its first chunk, with retries; returns the stream, that
        chunk (``None`` for an empty stream), the breaker ticket and the start time — with the
        slot still held (``_relay`` releases it)."""
        for attempt in range(lane.config.max_retries + 1):
            if attempt:
                await self._backoff(attempt - 1)
            self._fail_if_open(lane)
            await self._acquire(lane, call)
            handed_on = False
            try:
                ticket = self._admit(lane)
                began = self._clock.monotonic()
                chunks = lane.backend.stream(call.request)
                try:
                    async with AttemptTimeout(self._clock, lane.config.timeout_seconds):
                        first = await anext(chunks)
                except StopAsyncIteration:
                    handed_on = True
                    return chunks, None, ticket, began
                except TimeoutError:
                    await _close(chunks)
                    error = self._failed(lane, ticket, lane.timeout_error())
                except BackendError as exc:
                    await _close(chunks)
                    error = self._failed(lane, ticket, exc)
                except BaseException:
                    lane.breaker.abandon(ticket)
                    await _close(chunks)
                    raise
                else:
                    handed_on = True
                    if ticket is Ticket.PROBE:
                        # The first chunk is the probe's answer: the server is back. The rest
                        # of the stream is an ordinary request, so a long stream does not keep
                        # every other call failing fast until it ends.
                        lane.breaker.success(ticket)
                        ticket = Ticket.NORMAL
                    return chunks, first, ticket, began
                if not error.retryable or attempt == lane.config.max_retries:
                    raise error
                log.info("LLM backend %s failed (%s); retrying", lane.name, error)
            finally:
                if not handed_on:
                    self._release(lane)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _relay(
        self,
        lane: Lane,
        call: _Call,
        chunks: AsyncIterator[ChatChunk],
        first: ChatChunk | None,
        ticket: Ticket,
        began: float,
    ) -> AsyncGenerator[ChatChunk, None]:
        """Yield the rest of an opened stream, then account for it and free the slot."""
        verdict = False
        input_tokens = output_tokens = 0
        try:
            chunk = first
            while chunk is not None:
                if chunk.input_tokens is not None:
                    input_tokens = chunk.input_tokens
                if chunk.output_tokens is not None:
                    output_tokens = chunk.output_tokens
                yield chunk
                try:
                    async with AttemptTimeout(self._clock, lane.config.timeout_seconds):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    chunk = None
                except TimeoutError:
                    verdict = True
                    raise self._failed(lane, ticket, lane.timeout_error()) from None
                except BackendError as exc:
                    verdict = True
                    raise self._failed(lane, ticket, exc) from None
            verdict = True
            lane.breaker.success(ticket)
            response = ChatResponse(
                message={},
                model=call.request.model or lane.config.model or "",
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                backend=lane.name,
            )
            self._account(lane, call, response, self._clock.monotonic() - began)
        finally:
            if not verdict:
                lane.breaker.abandon(ticket)
            await _close(chunks)
            self._release(lane)

    def _admit(self, lane: Lane) -> Ticket:
        ticket = lane.breaker.admit()
        if ticket is None:
            self._meters.attempt(lane.name, "breaker_open")
            raise lane.open_error()
        return ticket

    def _fail_if_open(self, lane: Lane) -> None:
        if lane.breaker.blocked():
            self._meters.attempt(lane.name, "breaker_open")
            raise lane.open_error()

    def _failed(self, lane: Lane, ticket: Ticket, error: BackendError) -> BackendError:
        """Book a failed attempt on the breaker and counters; returns the error to raise."""
        lane.failed += 1
        if error.retryable:
            lane.breaker.failure(ticket)
            outcome = "timeout" if error.code == BACKEND_TIMEOUT else "retryable"
        else:
            lane.breaker.success(ticket)  # the server answered: it is up
            outcome = "error"
        self._meters.attempt(lane.name, outcome)
        return error

    async def _backoff(self, retry: int) -> None:
        delay = backoff_delay(retry, base=self._backoff_base, cap=self._backoff_max, rng=self._rng)
        await self._clock.sleep(delay)

    # -- accounting -------------------------------------------------------------------------

    def _account(self, lane: Lane, call: _Call, response: ChatResponse, seconds: float) -> None:
        lane.observe(seconds)
        self._meters.answered(
            backend=lane.name,
            request=call.request,
            default_model=lane.config.model,
            response=response,
            seconds=seconds,
            queue_wait=call.queue_wait,
            cost=lane.price(response.input_tokens, response.output_tokens),
            tenant=call.tenant,
            pid=call.pid,
        )

    # -- helpers ----------------------------------------------------------------------------

    def _new_call(
        self, request: ChatRequest, *, priority: int, tenant: str, pid: int | None
    ) -> _Call:
        return _Call(
            request=request,
            priority=priority,
            tenant=tenant,
            pid=pid,
            since=self._clock.monotonic(),
        )

    def _lane(self, name: str) -> Lane:
        lane = self._lanes.get(name)
        if lane is None:
            raise NotFound(
                f"no LLM backend named {name!r}; configured: {', '.join(sorted(self._lanes))}"
            )
        return lane

    def _chain(self, name: str) -> list[Lane]:
        primary = self._lane(name)
        chain = [primary]
        for fallback in primary.config.fallback:
            lane = self._lanes[fallback]
            if lane not in chain:
                chain.append(lane)
        return chain

    def _exhausted(self, failures: list[tuple[str, Exception]]) -> Exception:
        if len(failures) == 1:
            return failures[0][1]
        overloaded = [exc for _, exc in failures if isinstance(exc, BackendOverloaded)]
        summary = "; ".join(f"{name}: {exc}" for name, exc in failures)
        if len(overloaded) == len(failures):
            return BackendOverloaded(
                f"every LLM backend on the chain is overloaded ({summary})",
                retry_after=min(exc.retry_after for exc in overloaded),
            )
        return BackendError(f"no LLM backend could answer ({summary})", retryable=True)


def _closed_error() -> BackendUnavailable:
    return BackendUnavailable("the LLM scheduler is shut down; the kernel is stopping")


async def _close(chunks: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.debug("closing an LLM stream failed", exc_info=True)
