"""The openai_compat backend against a real OpenAI-compatible server (``transformers serve`` on
a tiny CPU model), and its error classification through a fault-injecting proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kernos.kernel.errors import BackendError, ConfigError
from kernos.kernel.llm import BackendConfig, ChatChunk, ChatRequest
from kernos.plugins.openai_compat import OpenAICompatBackend, retryable_status
from tests.llm.faultproxy import FaultProxy
from tests.llm.fixtures import fault_proxy, real_llm  # the fixtures
from tests.llm.server import LLMServer

__all__ = ["fault_proxy", "real_llm"]

HELLO = [{"role": "user", "content": "Plan the route for the bins on Main Street."}]
SECRET = "sk-kernos-test-0123456789abcdef"


def make(base_url: str, **fields: Any) -> OpenAICompatBackend:
    return OpenAICompatBackend(BackendConfig(name="local", base_url=base_url, **fields))


@pytest.fixture
async def backend(real_llm: LLMServer) -> AsyncIterator[OpenAICompatBackend]:
    backend = make(real_llm.base_url, model=real_llm.model)
    yield backend
    await backend.aclose()


async def collect(backend: OpenAICompatBackend, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in backend.stream(request)]


# -- The real server -------------------------------------------------------------------------


async def test_chat_answers_with_text_and_counted_usage(
    backend: OpenAICompatBackend, real_llm: LLMServer
) -> None:
    answer = await backend.chat(ChatRequest(messages=HELLO, max_tokens=12))
    assert answer.message["role"] == "assistant"
    assert isinstance(answer.message["content"], str) and answer.message["content"].strip()
    assert answer.output_tokens == 12  # the tiny model never stops early: it runs to the limit
    assert answer.input_tokens > 0
    assert answer.finish_reason == "length"
    assert answer.backend == "local"
    assert answer.model == real_llm.model


async def test_streamed_chunks_concatenate_to_the_whole_answer(
    backend: OpenAICompatBackend,
) -> None:
    request = ChatRequest(messages=HELLO, max_tokens=16)
    whole = await backend.chat(request)
    chunks = await collect(backend, request)
    assert len(chunks) > 2  # streamed, not one blob
    assert "".join(c.content for c in chunks) == whole.message["content"]
    *body, last = chunks
    assert all(c.finish_reason is None for c in body)
    assert last.finish_reason == "length"
    assert (last.input_tokens, last.output_tokens) == (whole.input_tokens, 16)


async def test_stopping_a_stream_early_leaves_the_backend_usable(
    backend: OpenAICompatBackend,
) -> None:
    stream = backend.stream(ChatRequest(messages=HELLO, max_tokens=64))
    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert first.content and first.finish_reason is None
    answer = await backend.chat(ChatRequest(messages=HELLO, max_tokens=4))
    assert answer.output_tokens == 4


async def test_models_and_health(backend: OpenAICompatBackend, real_llm: LLMServer) -> None:
    assert real_llm.model in await backend.models()
    await backend.health()


async def test_without_a_configured_model_the_first_listed_one_is_used(
    real_llm: LLMServer,
) -> None:
    backend = make(real_llm.base_url)
    try:
        answer = await backend.chat(ChatRequest(messages=HELLO, max_tokens=3))
    finally:
        await backend.aclose()
    assert answer.model == real_llm.model
    assert answer.output_tokens == 3


async def test_many_requests_in_flight_share_one_pool(real_llm: LLMServer) -> None:
    backend = make(real_llm.base_url, model=real_llm.model, concurrency=16)
    try:
        answers = await asyncio.gather(
            *(backend.chat(ChatRequest(messages=HELLO, max_tokens=4)) for _ in range(16))
        )
    finally:
        await backend.aclose()
    assert [a.output_tokens for a in answers] == [4] * 16


async def test_a_real_404_is_not_retryable(real_llm: LLMServer) -> None:
    backend = make(real_llm.base_url.replace("/v1", "/v9"), model=real_llm.model)
    try:
        with pytest.raises(BackendError) as caught:
            await backend.chat(ChatRequest(messages=HELLO, max_tokens=3))
    finally:
        await backend.aclose()
    assert caught.value.retryable is False
    assert caught.value.status == 404
    assert "'local'" in str(caught.value) and "404" in str(caught.value)


# -- Faults, through the proxy ---------------------------------------------------------------


@pytest.fixture
async def proxied(
    fault_proxy: FaultProxy, real_llm: LLMServer
) -> AsyncIterator[OpenAICompatBackend]:
    backend = make(
        f"{fault_proxy.url}/v1", model=real_llm.model, api_key=SECRET, timeout_seconds=1.0
    )
    yield backend
    await backend.aclose()


async def test_the_proxy_passes_requests_through(proxied: OpenAICompatBackend) -> None:
    answer = await proxied.chat(ChatRequest(messages=HELLO, max_tokens=5))
    assert answer.output_tokens == 5


async def test_refused_connections_are_retryable(
    proxied: OpenAICompatBackend, fault_proxy: FaultProxy
) -> None:
    fault_proxy.set_mode("refuse")
    with pytest.raises(BackendError) as caught:
        await proxied.chat(ChatRequest(messages=HELLO, max_tokens=3))
    assert caught.value.retryable is True
    assert caught.value.status is None
    assert "cannot connect" in str(caught.value) and "'local'" in str(caught.value)
    with pytest.raises(BackendError) as in_stream:
        await collect(proxied, ChatRequest(messages=HELLO, max_tokens=3))
    assert in_stream.value.retryable is True
    fault_proxy.set_mode("pass")  # the server is back: the same backend recovers
    assert (await proxied.chat(ChatRequest(messages=HELLO, max_tokens=3))).output_tokens == 3


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
async def test_server_errors_and_throttling_are_retryable(
    proxied: OpenAICompatBackend, fault_proxy: FaultProxy, status: int
) -> None:
    fault_proxy.set_mode("status", status=status)
    for call in (proxied.chat, lambda r: collect(proxied, r)):
        with pytest.raises(BackendError) as caught:
            await call(ChatRequest(messages=HELLO, max_tokens=3))
        assert caught.value.retryable is True
        assert caught.value.status == status
        assert f"HTTP {status}" in str(caught.value)
        assert "injected by the fault proxy" in str(caught.value)  # the server's own message


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retryable_and_never_show_the_key(
    proxied: OpenAICompatBackend, fault_proxy: FaultProxy, status: int
) -> None:
    fault_proxy.set_mode("status", status=status)
    with pytest.raises(BackendError) as caught:
        await proxied.chat(ChatRequest(messages=HELLO, max_tokens=3))
    assert caught.value.retryable is False
    assert caught.value.status == status
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.args)


async def test_a_hanging_server_times_out_retryably(
    proxied: OpenAICompatBackend, fault_proxy: FaultProxy
) -> None:
    fault_proxy.set_mode("hang")
    with pytest.raises(BackendError) as caught:
        await proxied.chat(ChatRequest(messages=HELLO, max_tokens=3))
    assert caught.value.retryable is True
    assert "timed out" in str(caught.value)
    with pytest.raises(BackendError) as in_stream:
        await collect(proxied, ChatRequest(messages=HELLO, max_tokens=3))
    assert in_stream.value.retryable is True


async def test_an_answer_cut_mid_stream_is_retryable(
    proxied: OpenAICompatBackend, fault_proxy: FaultProxy
) -> None:
    fault_proxy.set_mode("cut", after=600)  # headers and a chunk or two, then the line drops
    with pytest.raises(BackendError) as caught:
        await collect(proxied, ChatRequest(messages=HELLO, max_tokens=64))
    assert caught.value.retryable is True


# -- Configuration and classification --------------------------------------------------------


def test_a_backend_needs_an_http_base_url() -> None:
    with pytest.raises(ConfigError, match="needs base_url"):
        OpenAICompatBackend(BackendConfig(name="x"))
    with pytest.raises(ConfigError, match="http") as caught:
        OpenAICompatBackend(BackendConfig(name="x", base_url="ftp://user:pw@host/v1"))
    assert "pw" not in str(caught.value)


def test_retryable_statuses() -> None:
    assert [
        s for s in (200, 400, 401, 404, 408, 409, 422, 429, 500, 503) if retryable_status(s)
    ] == [
        408,
        429,
        500,
        503,
    ]
