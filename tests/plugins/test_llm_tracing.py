"""LLM backend calls join the syscall's trace: a GenAI client span per request, its
``traceparent`` sent to the real server, and message content only when opted in, masked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from kernos.kernel.errors import BackendError
from kernos.kernel.genai import mask, options_from_environ
from kernos.kernel.llm import BackendConfig, ChatRequest
from kernos.kernel.telemetry import GenAIOptions, Telemetry
from kernos.plugins.openai_compat import OpenAICompatBackend
from kernos.plugins.vllm import VLLMBackend
from tests.llm.fixtures import real_llm  # the fixture
from tests.llm.server import LLMServer

__all__ = ["real_llm"]

PROMPT = [
    {
        "role": "user",
        "content": "Mail ada@example.org, key sk-live-0123456789abcdefghij, about bin 7.",
    }
]


class RecordingTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport to the real server, keeping each request's headers."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[httpx.Headers] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers)
        return await super().handle_async_request(request)


@pytest.fixture
def spans() -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(span_processors=[SimpleSpanProcessor(exporter)])
    yield telemetry, exporter
    telemetry.shutdown()


def _backend(
    cls: type[OpenAICompatBackend], server: LLMServer, telemetry: Telemetry
) -> tuple[OpenAICompatBackend, RecordingTransport]:
    transport = RecordingTransport()
    backend = cls(
        BackendConfig(
            name="local",
            kind="vllm" if cls is VLLMBackend else "openai_compat",
            base_url=server.base_url,
            model=server.model,
        ),
        transport=transport,
    )
    backend.telemetry = telemetry
    return backend, transport


def _client(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    return span


@pytest.mark.parametrize("cls", [OpenAICompatBackend, VLLMBackend])
async def test_a_chat_is_a_client_span_under_the_syscall_and_sends_its_traceparent(
    real_llm: LLMServer, spans: tuple[Telemetry, InMemorySpanExporter], cls: Any
) -> None:
    telemetry, exporter = spans
    backend, transport = _backend(cls, real_llm, telemetry)
    try:
        with telemetry.tracer.start_as_current_span("kernos.syscall llm.chat") as syscall:
            answer = await backend.chat(ChatRequest(messages=PROMPT, max_tokens=4))
    finally:
        await backend.aclose()
    client = _client(exporter)
    assert client.name == f"chat {real_llm.model}"
    assert client.parent is not None and client.parent.span_id == syscall.get_span_context().span_id
    assert client.context.trace_id == syscall.get_span_context().trace_id
    sent = transport.headers[-1]["traceparent"]
    version, trace_id, parent_id, flags = sent.split("-")
    assert (version, trace_id, parent_id) == (
        "00",
        f"{client.context.trace_id:032x}",
        f"{client.context.span_id:016x}",  # the server's spans hang under the client span
    )
    assert int(flags, 16) & 1  # sampled
    attributes = dict(client.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == real_llm.model
    assert attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.usage.input_tokens"] == answer.input_tokens > 0
    assert attributes["gen_ai.usage.output_tokens"] == answer.output_tokens == 4
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == real_llm.port
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    # Not opted in: no content anywhere.
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output")) for k in attributes)
    assert client.events == ()


async def test_content_is_recorded_only_when_opted_in_and_then_masked(
    real_llm: LLMServer,
) -> None:
    exporter = InMemorySpanExporter()
    options = options_from_environ(
        {
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
            "OTEL_SEMCONV_STABILITY_OPT_IN": "http,gen_ai_latest_experimental",
        }
    )
    assert options == GenAIOptions(latest=True, capture_content=True)
    telemetry = Telemetry(span_processors=[SimpleSpanProcessor(exporter)], genai=options)
    backend, _ = _backend(OpenAICompatBackend, real_llm, telemetry)
    try:
        chunks = [c async for c in backend.stream(ChatRequest(messages=PROMPT, max_tokens=4))]
    finally:
        await backend.aclose()
        telemetry.shutdown()
    client = _client(exporter)
    attributes = dict(client.attributes or {})
    assert attributes["gen_ai.provider.name"] == "openai" and "gen_ai.system" not in attributes
    sent = str(attributes["gen_ai.input.messages"])
    assert "<EMAIL>" in sent and "<API_KEY>" in sent and "bin 7" in sent
    assert "ada@example.org" not in sent and "sk-live" not in sent
    [output] = json.loads(str(attributes["gen_ai.output.messages"]))
    assert output["content"] == "".join(c.content for c in chunks)
    assert attributes["gen_ai.usage.output_tokens"] == 4


async def test_a_failed_call_marks_its_span(spans: tuple[Telemetry, InMemorySpanExporter]) -> None:
    telemetry, exporter = spans
    backend = OpenAICompatBackend(
        BackendConfig(name="gone", base_url="http://127.0.0.1:9/v1", model="m")
    )
    backend.telemetry = telemetry
    with pytest.raises(BackendError):
        await backend.chat(ChatRequest(messages=PROMPT))
    await backend.aclose()
    client = _client(exporter)
    assert client.status.status_code is StatusCode.ERROR
    assert dict(client.attributes or {})["error.type"] == "backend_error"


def test_masking_hides_secrets_and_addresses_and_keeps_the_rest() -> None:
    text = (
        'user bob@city.gov; Authorization: Bearer abcdefghijklmnop1234; password="hunter22"; '
        "AKIAIOSFODNN7EXAMPLE; bins 12 and 14"
    )
    masked = mask(text)
    assert "bob@city.gov" not in masked and "<EMAIL>" in masked
    assert "abcdefghijklmnop1234" not in masked and "hunter22" not in masked
    assert "AKIAIOSFODNN7EXAMPLE" not in masked
    assert masked.endswith("bins 12 and 14")
