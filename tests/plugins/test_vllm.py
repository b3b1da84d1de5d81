"""The vllm backend on recorded vLLM exchanges (no vLLM server runs on CPU machines): tool
calls whole and streamed, guided decoding fields in both dialects, ``/metrics`` as load,
``/health``, and vLLM's error shapes. A replay server stands in for ``vllm serve``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from kernos.kernel.errors import BackendError, ConfigError
from kernos.kernel.llm import BackendConfig, BackendLoad, ChatRequest
from kernos.plugins.vllm import VLLMBackend, guided_fields, parse_metrics
from tests.llm.replay import ReplayServer, recording

MODEL = "Qwen/Qwen2.5-1.5B-Instruct"
WEATHER = [{"role": "user", "content": "Weather in Berlin?"}]


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


def make(replay: ReplayServer, **options: Any) -> VLLMBackend:
    return VLLMBackend(
        BackendConfig(
            name="gpu", kind="vllm", base_url=replay.base_url, model=MODEL, options=options
        )
    )


@pytest.fixture
async def backend(replay: ReplayServer) -> AsyncIterator[VLLMBackend]:
    backend = make(replay)
    yield backend
    await backend.aclose()


def sent(replay: ReplayServer) -> dict[str, Any]:
    body = replay.received[-1]["json"]
    assert isinstance(body, dict)
    return body


async def test_a_tool_call_comes_back_as_an_openai_message(
    backend: VLLMBackend, replay: ReplayServer
) -> None:
    replay.install("vllm_chat_tool_call")
    tools = recording("vllm_chat_tool_call")["request"]["json"]["tools"]
    answer = await backend.chat(ChatRequest(messages=WEATHER, tools=tools, tool_choice="auto"))
    assert answer.finish_reason == "tool_calls"
    assert answer.message["content"] is None
    [call] = answer.message["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Berlin"}
    assert (answer.input_tokens, answer.output_tokens) == (187, 20)
    body = sent(replay)
    assert body["tools"] == tools and body["tool_choice"] == "auto" and "stream" not in body


async def test_streamed_tool_call_deltas_and_the_usage_only_last_event(
    backend: VLLMBackend, replay: ReplayServer
) -> None:
    replay.install("vllm_stream_tool_call")
    chunks = [c async for c in backend.stream(ChatRequest(messages=WEATHER, tools=[]))]
    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas[0]["function"]["name"] == "get_weather"
    assert deltas[0]["id"].startswith("chatcmpl-tool-")
    arguments = "".join(d["function"].get("arguments", "") for d in deltas)
    assert json.loads(arguments) == {"city": "Berlin"}
    # vLLM sends the finish reason and the usage in two events; the backend gives one last chunk.
    last = chunks[-1]
    assert (last.finish_reason, last.input_tokens, last.output_tokens) == ("tool_calls", 187, 20)
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert sent(replay)["stream_options"] == {"include_usage": True}


async def test_guided_decoding_is_sent_as_structured_outputs(
    backend: VLLMBackend, replay: ReplayServer
) -> None:
    replay.install("vllm_structured_outputs")
    schema = recording("vllm_structured_outputs")["request"]["json"]["structured_outputs"]["json"]
    messages = [{"role": "user", "content": "Classify: the bin is overflowing."}]
    # The pre-0.12 field name, as an older caller would send it:
    answer = await backend.chat(ChatRequest(messages=messages, extra_body={"guided_json": schema}))
    assert json.loads(answer.message["content"]) == {"level": "overflowing"}
    body = sent(replay)
    assert body["structured_outputs"] == {"json": schema}
    assert "guided_json" not in body
    assert body == recording("vllm_structured_outputs")["request"]["json"]


async def test_legacy_servers_get_guided_fields(replay: ReplayServer) -> None:
    replay.install("vllm_structured_outputs")
    backend = make(replay, guided="legacy")
    try:
        await backend.chat(
            ChatRequest(
                messages=WEATHER,
                extra_body={"structured_outputs": {"choice": ["ok", "full"]}, "top_k": 5},
                response_format=None,
            )
        )
    finally:
        await backend.aclose()
    body = sent(replay)
    assert body["guided_choice"] == ["ok", "full"]
    assert body["top_k"] == 5 and "structured_outputs" not in body


async def test_response_format_passes_through(backend: VLLMBackend, replay: ReplayServer) -> None:
    replay.install("vllm_structured_outputs")
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    await backend.chat(ChatRequest(messages=WEATHER, response_format=response_format))
    assert sent(replay)["response_format"] == response_format


def test_guided_fields_both_ways() -> None:
    assert guided_fields(
        {"guided_regex": "a+", "guided_decoding_backend": "xgrammar"}, legacy=False
    ) == {"structured_outputs": {"regex": "a+"}}
    assert guided_fields({"structured_outputs": {"grammar": "g"}}, legacy=True) == {
        "guided_grammar": "g"
    }
    assert guided_fields({"temperature": 0}, legacy=False) == {"temperature": 0}


async def test_metrics_become_the_load(backend: VLLMBackend, replay: ReplayServer) -> None:
    replay.install("vllm_metrics")
    # Two engines (data parallel): requests add up, the fuller KV cache counts.
    assert await backend.load() == BackendLoad(running=41, waiting=5, kv_cache_usage=0.8125)
    assert replay.received[-1]["path"] == "/metrics"  # at the server's root, not under /v1


def test_metrics_of_an_old_server() -> None:
    text = recording("vllm_metrics_v0")["response"]["text"]
    assert parse_metrics(text) == BackendLoad(running=3, waiting=1, kv_cache_usage=0.25)
    assert parse_metrics("# nothing here\n") == BackendLoad()


async def test_no_metrics_is_no_load_and_garbage_is_an_error(
    backend: VLLMBackend, replay: ReplayServer
) -> None:
    assert await backend.load() is None  # 404: the server publishes none
    replay.routes[("GET", "/metrics")] = {"response": {"text": "vllm:x{ 1 2 3 garbage"}}
    with pytest.raises(BackendError) as caught:
        await backend.load()
    assert caught.value.retryable is False


async def test_health(backend: VLLMBackend, replay: ReplayServer) -> None:
    replay.install("vllm_health")
    await backend.health()
    assert replay.received[-1]["path"] == "/health"
    replay.install("vllm_health_down")
    with pytest.raises(BackendError) as caught:
        await backend.health()
    assert (caught.value.retryable, caught.value.status) == (True, 503)
    assert "The engine is dead." in str(caught.value)


async def test_models(backend: VLLMBackend, replay: ReplayServer) -> None:
    replay.install("vllm_models")
    assert await backend.models() == [MODEL]


async def test_a_bad_request_is_not_retryable_and_quotes_the_server(
    backend: VLLMBackend, replay: ReplayServer
) -> None:
    replay.install("vllm_error_400")
    with pytest.raises(BackendError) as caught:
        await backend.chat(ChatRequest(messages=WEATHER, max_tokens=100_000))
    assert (caught.value.retryable, caught.value.status) == (False, 400)
    assert "maximum context length is 32768" in str(caught.value)


async def test_an_error_inside_a_stream_is_classified_by_its_code(
    backend: VLLMBackend, replay: ReplayServer
) -> None:
    replay.install("vllm_stream_error")
    got = []
    with pytest.raises(BackendError) as caught:
        async for chunk in backend.stream(ChatRequest(messages=WEATHER)):
            got.append(chunk.content)
    assert got == ["The bin"]
    assert (caught.value.retryable, caught.value.status) == (True, 500)
    assert "EngineCore" in str(caught.value)


async def test_an_answer_that_is_no_completion_is_not_retryable(
    backend: VLLMBackend, replay: ReplayServer
) -> None:
    route = ("POST", "/v1/chat/completions")
    replay.routes[route] = {"response": {"text": "<html>captive portal</html>"}}
    with pytest.raises(BackendError, match="not JSON") as caught:
        await backend.chat(ChatRequest(messages=WEATHER))
    assert caught.value.retryable is False
    replay.routes[route] = {"response": {"json": {"object": "list", "data": []}}}
    with pytest.raises(BackendError, match="not a chat completion"):
        await backend.chat(ChatRequest(messages=WEATHER))


def test_an_unknown_guided_dialect_is_refused() -> None:
    with pytest.raises(ConfigError, match="options.guided"):
        VLLMBackend(
            BackendConfig(name="gpu", kind="vllm", base_url="http://h/v1", options={"guided": "x"})
        )
