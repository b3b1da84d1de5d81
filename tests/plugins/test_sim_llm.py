"""The simulated backend: labelled, deterministic per seed, paced by its timing model on the
kernel's clock (a simulated clock here, so no test waits or measures real time)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kernos.kernel.clock import SimulatedClock
from kernos.kernel.errors import ConfigError
from kernos.kernel.llm import BackendConfig, BackendLoad, ChatRequest
from kernos.plugins.sim_llm import LABEL, MODEL, SimLLMBackend

HELLO = [{"role": "user", "content": "Which bins are full on Main Street?"}]
INSTANT = {"time_scale": 0}


def sim(
    name: str = "sim", *, concurrency: int = 64, clock: Any = None, **options: Any
) -> SimLLMBackend:
    config = BackendConfig(name=name, kind="sim-llm", concurrency=concurrency, options=options)
    return SimLLMBackend(config, clock=clock)


async def test_answers_say_they_are_simulated() -> None:
    backend = sim(**INSTANT)
    answer = await backend.chat(ChatRequest(messages=HELLO, max_tokens=10))
    assert answer.model == MODEL == "sim-llm"
    assert answer.message["content"].startswith(LABEL)
    assert answer.output_tokens == 10 == len(answer.message["content"].split())
    assert answer.input_tokens > 0
    assert answer.finish_reason == "length"
    assert await backend.models() == ["sim-llm"]
    await backend.health()


async def test_the_same_seed_gives_the_same_answer() -> None:
    request = ChatRequest(messages=HELLO, max_tokens=24)
    first = await sim(seed=7, **INSTANT).chat(request)
    again = await sim(seed=7, **INSTANT).chat(request)
    other_seed = await sim(seed=8, **INSTANT).chat(request)
    other_question = await sim(seed=7, **INSTANT).chat(
        ChatRequest(messages=[{"role": "user", "content": "And on Elm Street?"}], max_tokens=24)
    )
    assert first == again
    assert first.message != other_seed.message
    assert first.message != other_question.message


async def test_the_stream_is_the_answer_token_by_token() -> None:
    backend = sim(**INSTANT)
    request = ChatRequest(messages=HELLO)
    chunks = [c async for c in backend.stream(request)]
    whole = await backend.chat(request)
    assert len(chunks) == 32 + 1  # the default length, then the finish
    assert "".join(c.content for c in chunks) == whole.message["content"]
    assert (chunks[-1].finish_reason, chunks[-1].output_tokens) == ("stop", 32)


async def test_a_required_tool_call_is_simulated_too() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "dispatch_trucks",
                "parameters": {
                    "type": "object",
                    "properties": {"zone": {"type": "string"}, "count": {"type": "integer"}},
                    "required": ["zone", "count"],
                },
            },
        }
    ]
    backend = sim(**INSTANT)
    answer = await backend.chat(ChatRequest(messages=HELLO, tools=tools, tool_choice="required"))
    assert answer.finish_reason == "tool_calls"
    [call] = answer.message["tool_calls"]
    assert call["function"]["name"] == "dispatch_trucks"
    assert json.loads(call["function"]["arguments"]) == {"zone": "simulated", "count": 0}
    free = await backend.chat(ChatRequest(messages=HELLO, tools=tools, tool_choice="auto"))
    assert "tool_calls" not in free.message


async def test_concurrency_is_honoured_and_time_follows_the_model() -> None:
    clock = SimulatedClock()
    backend = sim(concurrency=2, clock=clock, first_token_seconds=0.5, token_seconds=0.1)
    request = ChatRequest(messages=HELLO, max_tokens=10)
    tasks = [asyncio.create_task(backend.chat(request)) for _ in range(5)]
    await clock.wait_for_sleepers(2)
    assert await backend.load() == BackendLoad(running=2, waiting=3)
    await clock.run_until_idle()
    answers = await asyncio.gather(*tasks)
    assert all(a.output_tokens == 10 for a in answers)
    assert await backend.load() == BackendLoad(running=0, waiting=0)
    # Three rounds (2 + 2 + 1 requests): two batches of two, then one alone.
    batch_of_two = 0.5 + 10 * backend.step_seconds(2)
    alone = 0.5 + 10 * backend.step_seconds(1)
    assert clock.monotonic() == pytest.approx(2 * batch_of_two + alone)


def test_batching_shares_steps_up_to_the_peak() -> None:
    backend = sim(token_seconds=0.001, batch_exponent=0.5, peak_tokens_per_second=8000)
    assert backend.step_seconds(1) == pytest.approx(0.001)
    assert backend.step_seconds(16) == pytest.approx(0.004)  # 4 times slower, 16 times the work
    assert backend.step_seconds(256) == pytest.approx(256 / 8000)  # saturated
    assert sim(time_scale=0).step_seconds(64) == 0


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown options"):
        sim(seeed=1)
    with pytest.raises(ConfigError, match="bad option"):
        sim(token_seconds="fast")
    with pytest.raises(ConfigError, match="positive"):
        sim(max_tokens=0)
