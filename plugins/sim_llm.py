"""The ``sim-llm`` backend kind: a SIMULATED language model, for demos and fast tests.

Nothing here is a model. Every answer starts with ``[simulated]``, the model is called
``sim-llm``, and the words are drawn from a fixed list by a generator seeded with the
backend's ``seed`` and the request, so the same request always gets the same answer.

What is realistic is the timing. A request waits for one of ``concurrency`` slots, pays a
fixed ``first_token_seconds``, then one decoding step per output token; a step takes
``token_seconds * n ** batch_exponent`` while ``n`` requests decode together, so a batch of
``n`` yields ``n ** (1 - batch_exponent)`` times the tokens per second of one request, up to
``peak_tokens_per_second`` in all (the machine is saturated). The defaults are fitted to
``transformers serve --continuous-batching`` on the tiny CPU model of the test suite, on a
2-core machine (``bench/llm_backends.py`` measures both and prints the fit): 684 tokens/s with
one request in flight, 1,732 with 4, 3,646 with 16, 2,718 with 64; 8.7 ms + 1.2 ms per token
for one request.

Options (``options`` of its ``[[llm_backends]]`` table), with their defaults:

* ``seed`` (0): answers differ per seed;
* ``max_tokens`` (32): output tokens when the request sets none;
* ``first_token_seconds`` (0.009): fixed cost per request (prefill);
* ``token_seconds`` (0.0012): one decoding step of a lone request;
* ``batch_exponent`` (0.4): how a step slows as the batch grows;
* ``peak_tokens_per_second`` (3500): the most tokens per second of all requests together;
* ``time_scale`` (1.0): multiplies every delay (0: answer at once).

Sleeps go through the kernel's ``Clock`` when one is given, so a simulated clock runs a
simulated model too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import AsyncIterator
from typing import Any

from kernos.kernel.clock import Clock, SystemClock
from kernos.kernel.errors import ConfigError
from kernos.kernel.llm import (
    BackendConfig,
    BackendLoad,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    LLMBackend,
)

KIND = "sim-llm"
MODEL = "sim-llm"
LABEL = "[simulated]"

DEFAULTS: dict[str, float] = {
    "seed": 0,
    "max_tokens": 32,
    "first_token_seconds": 0.009,
    "token_seconds": 0.0012,
    "batch_exponent": 0.4,
    "peak_tokens_per_second": 3500.0,
    "time_scale": 1.0,
}
"""Timing fitted to the real CPU server (see the module docstring)."""

_WORDS = (
    "bin", "route", "truck", "sensor", "street", "fill", "level", "north", "south", "depot",
    "shift", "driver", "crew", "collect", "empty", "schedule", "priority", "district",
    "report", "status", "window", "weather", "traffic", "plan", "approve", "escalate",
    "check", "pickup", "load", "capacity", "zone", "morning", "evening",
)  # fmt: skip


class SimLLMBackend(LLMBackend):
    """A simulated model (``sim-llm``): deterministic labelled text with realistic timing."""

    def __init__(self, config: BackendConfig, *, clock: Clock | None = None) -> None:
        super().__init__(config)
        unknown = set(config.options) - set(DEFAULTS)
        if unknown:
            raise ConfigError(
                f"backend {config.name!r} (sim-llm): unknown options {sorted(unknown)}; "
                f"known: {sorted(DEFAULTS)}"
            )
        opts = {**DEFAULTS, **config.options}
        try:
            self.seed = int(opts["seed"])
            self.max_tokens = int(opts["max_tokens"])
            self.first_token_seconds = float(opts["first_token_seconds"])
            self.token_seconds = float(opts["token_seconds"])
            self.batch_exponent = float(opts["batch_exponent"])
            self.peak_tokens_per_second = float(opts["peak_tokens_per_second"])
            self.time_scale = float(opts["time_scale"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"backend {config.name!r} (sim-llm): bad option ({exc})") from None
        if (
            self.max_tokens < 1
            or min(self.first_token_seconds, self.token_seconds, self.time_scale) < 0
            or self.peak_tokens_per_second <= 0
        ):
            raise ConfigError(
                f"backend {config.name!r} (sim-llm): max_tokens and peak_tokens_per_second "
                "must be positive, times and time_scale ≥ 0"
            )
        self._clock = clock or SystemClock()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._decoding = 0
        self._waiting = 0

    # -- The contract -----------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """A deterministic simulated answer, after the simulated time."""
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        finish: str | None = None
        input_tokens = output_tokens = 0
        async for chunk in self.stream(request):
            message["content"] += chunk.content
            if chunk.tool_calls:
                message["tool_calls"] = [_whole_call(delta) for delta in chunk.tool_calls]
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
                input_tokens = chunk.input_tokens or 0
                output_tokens = chunk.output_tokens or 0
        if "tool_calls" in message and not message["content"]:
            message["content"] = None
        return ChatResponse(
            message=message,
            model=MODEL,
            finish_reason=finish,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            backend=self.name,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The answer one token at a time, paced like the server it was fitted to."""
        rng = random.Random(self._digest(request))  # noqa: S311 - a simulation, not security
        count = request.max_tokens or self.max_tokens
        call = _tool_call(request, rng)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._decoding += 1
        # Paced against a schedule, not by sleeping each step: a sleep that overshoots (the
        # event loop wakes up to a millisecond late) shortens the next one instead of adding up.
        due = self._clock.monotonic()
        try:
            due = await self._until(due + self.first_token_seconds * self.time_scale)
            if call is not None:
                for _ in range(count):
                    due = await self._until(due + self.step_seconds(self._decoding))
                yield ChatChunk(tool_calls=[call])
                finish = "tool_calls"
            else:
                for index in range(count):
                    due = await self._until(due + self.step_seconds(self._decoding))
                    word = LABEL if index == 0 else rng.choice(_WORDS)
                    yield ChatChunk(content=word if index == 0 else " " + word)
                finish = "length" if request.max_tokens is not None else "stop"
        finally:
            self._decoding -= 1
            self._slots.release()
        yield ChatChunk(
            finish_reason=finish,
            input_tokens=_input_tokens(request),
            output_tokens=count,
        )

    async def models(self) -> list[str]:
        """Only ``sim-llm``."""
        return [MODEL]

    async def load(self) -> BackendLoad:
        """Requests decoding and waiting for a slot right now."""
        return BackendLoad(running=self._decoding, waiting=self._waiting, kv_cache_usage=None)

    # -- Timing ------------------------------------------------------------------------------

    def step_seconds(self, batch: int) -> float:
        """How long one decoding step takes while ``batch`` requests decode together."""
        batch = max(1, batch)
        seconds = max(
            self.token_seconds * batch**self.batch_exponent, batch / self.peak_tokens_per_second
        )
        return seconds * self.time_scale

    async def _until(self, due: float) -> float:
        """Sleep on the clock until ``due`` (its monotonic time); return ``due``."""
        if self.time_scale > 0:
            delay = due - self._clock.monotonic()
            if delay > 0:
                await self._clock.sleep(delay)
        return due

    def _digest(self, request: ChatRequest) -> bytes:
        what = {
            "seed": self.seed,
            "messages": request.messages,
            "tools": request.tools,
            "tool_choice": request.tool_choice,
            "max_tokens": request.max_tokens,
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).digest()


def _input_tokens(request: ChatRequest) -> int:
    """A deterministic stand-in for a tokenizer: words of every message, plus 4 per message."""
    total = 0
    for message in request.messages:
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        total += 4 + len(text.split())
    return total


def _tool_call(request: ChatRequest, rng: random.Random) -> dict[str, Any] | None:
    """A call when the request demands one (``tool_choice`` ``required`` or a named function),
    with placeholder values for the function's required parameters."""
    if not request.tools or request.tool_choice in (None, "auto", "none"):
        return None
    functions = [t.get("function", {}) for t in request.tools if t.get("type") == "function"]
    if isinstance(request.tool_choice, dict):
        wanted = request.tool_choice.get("function", {}).get("name")
        functions = [f for f in functions if f.get("name") == wanted]
    if not functions:
        return None
    function = functions[0]
    schema = function.get("parameters") or {}
    properties = schema.get("properties") or {}
    placeholder = {"string": "simulated", "integer": 0, "number": 0.0, "boolean": False}
    arguments = {
        name: placeholder.get(str(properties.get(name, {}).get("type")))
        for name in schema.get("required") or []
    }
    return {
        "index": 0,
        "id": f"call_sim_{rng.getrandbits(48):012x}",
        "type": "function",
        "function": {"name": function.get("name"), "arguments": json.dumps(arguments)},
    }


def _whole_call(delta: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in delta.items() if key != "index"}
