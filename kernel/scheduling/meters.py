"""What the scheduler records per call, under the names declared in ``kernos.kernel.telemetry``.

Per answered call: ``gen_ai.client.operation.duration`` (the answering attempt's service time;
queue wait is separate), ``gen_ai.client.token.usage`` by ``gen_ai.token.type``,
``kernos.inference.cost`` (the backend's prices per 1,000 tokens) — each with the request and
response model, ``kernos.backend`` and ``kernos.tenant`` (not the pid: one series per process
would swamp a Prometheus; per-process usage and cost are on the process record) — and
``kernos.scheduler.queue_wait`` by backend and tenant. Per attempt:
``kernos.scheduler.attempts`` by backend and outcome. The queue depth, in-flight and breaker
gauges move as they change.
"""

from __future__ import annotations

from typing import Any

from kernos.kernel import telemetry as names
from kernos.kernel.llm import ChatRequest, ChatResponse
from kernos.kernel.scheduling.breaker import BreakerState
from kernos.kernel.telemetry import Telemetry


class SchedulerMeters:
    """The scheduler's instruments (no-op ones without telemetry)."""

    def __init__(self, telemetry: Telemetry | None) -> None:
        telemetry = telemetry or Telemetry(enabled=False)
        self._duration = telemetry.instrument(names.GEN_AI_OPERATION_DURATION)
        self._tokens = telemetry.instrument(names.GEN_AI_TOKEN_USAGE)
        self._cost = telemetry.instrument(names.INFERENCE_COST)
        self._queue_wait = telemetry.instrument(names.SCHEDULER_QUEUE_WAIT)
        self._attempts = telemetry.instrument(names.SCHEDULER_ATTEMPTS)
        self._depth = telemetry.instrument(names.SCHEDULER_QUEUE_DEPTH)
        self._inflight = telemetry.instrument(names.SCHEDULER_INFLIGHT)
        self._idle = telemetry.instrument(names.SCHEDULER_IDLE_CAPACITY)
        self._breaker = telemetry.instrument(names.BREAKER_STATE)

    def depth(self, backend: str, change: int) -> None:
        """Requests waiting for ``backend`` went up or down."""
        self._depth.add(change, {names.ATTR_BACKEND: backend})

    def inflight(self, backend: str, change: int) -> None:
        """Requests running on ``backend`` went up or down (its idle capacity the other way)."""
        self._inflight.add(change, {names.ATTR_BACKEND: backend})
        self._idle.add(-change, {names.ATTR_BACKEND: backend})

    def capacity(self, backend: str, change: int) -> None:
        """``backend``'s concurrency went up or down (set up, or resized)."""
        self._idle.add(change, {names.ATTR_BACKEND: backend})

    def breaker(self, backend: str, state: BreakerState) -> None:
        """``backend``'s breaker changed state."""
        self._breaker.set(state.level, {names.ATTR_BACKEND: backend})

    def attempt(self, backend: str, outcome: str) -> None:
        """One attempt ended (``ok``, ``error``, ``retryable``, ``timeout``, ``breaker_open``,
        ``overloaded``)."""
        self._attempts.add(1, {names.ATTR_BACKEND: backend, "outcome": outcome})

    def answered(
        self,
        *,
        backend: str,
        request: ChatRequest,
        default_model: str | None,
        response: ChatResponse,
        seconds: float,
        queue_wait: float,
        cost: float,
        tenant: str,
        pid: int | None,
    ) -> None:
        """A call was answered: its latency, tokens, cost and queue wait."""
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": request.model or default_model or "",
            "gen_ai.response.model": response.model,
            names.ATTR_BACKEND: backend,
            names.ATTR_TENANT: tenant,
        }
        self._duration.record(seconds, attrs)
        self._tokens.record(response.input_tokens, {**attrs, "gen_ai.token.type": "input"})
        self._tokens.record(response.output_tokens, {**attrs, "gen_ai.token.type": "output"})
        self._cost.add(cost, attrs)
        self._queue_wait.record(
            queue_wait, {names.ATTR_BACKEND: backend, names.ATTR_TENANT: tenant}
        )
        self.attempt(backend, "ok")
