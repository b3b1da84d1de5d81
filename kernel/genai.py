"""GenAI client spans and W3C trace propagation for the HTTP calls Kernos makes.

An LLM backend wraps each request in ``llm_client_span``: a ``CLIENT`` span named by the GenAI
semantic conventions (``chat {gen_ai.request.model}``) under the current syscall span, whose
``traceparent`` goes out with the request so the server's own spans join the trace.
``inject`` adds the current context's ``traceparent`` to any outgoing headers (webhooks).

Which attribute names: by default those of the GenAI conventions before the
``gen_ai.provider.name`` rename (``gen_ai.system``), with prompt and completion recorded
(only when opted in) as span events; with
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` the latest experimental ones:
``gen_ai.provider.name``, and content as the ``gen_ai.input.messages`` /
``gen_ai.output.messages`` attributes. Content is recorded only with
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``, and then masked: e-mail
addresses, API keys, tokens and whatever the detectors plugins register find.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kernos.kernel import telemetry as names
from kernos.kernel.telemetry import GenAIOptions

_PROPAGATOR = TraceContextTextMapPropagator()
LATEST = "gen_ai_latest_experimental"
"""The ``OTEL_SEMCONV_STABILITY_OPT_IN`` value for the latest GenAI conventions."""


def options_from_environ(environ: Mapping[str, str]) -> GenAIOptions:
    """Read ``OTEL_SEMCONV_STABILITY_OPT_IN`` (a comma list) and
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``."""
    opt_in = {
        item.strip().lower() for item in environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")
    }
    capture = environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
    return GenAIOptions(latest=LATEST in opt_in, capture_content=capture.strip().lower() == "true")


# -- Masking ---------------------------------------------------------------------------------

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("EMAIL", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    (
        "PRIVATE_KEY",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    ),
    ("API_KEY", re.compile(r"\b(?:sk|rk|pk)-(?:[A-Za-z0-9_-]+-)?[A-Za-z0-9_-]{16,}")),
    ("API_KEY", re.compile(r"\b(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,}")),
    ("API_KEY", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("API_KEY", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("API_KEY", re.compile(r"\bkn_[A-Za-z0-9_-]{43}")),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")),
    ("CREDENTIAL", re.compile(r"(?i)\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{12,}")),
    (
        "SECRET",
        re.compile(
            r"(?i)\b(password|passwd|secret|api[_-]?key|token)(\"?\s*[:=]\s*\"?)([^\s\"',;]{4,})"
        ),
    ),
    ("TOKEN", re.compile(r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{40,}")),
)


def mask(text: str, detectors: Sequence[Any] = ()) -> str:
    """``text`` with secrets and personal data replaced by ``<KIND>``: e-mail addresses,
    API keys and tokens (Kernos's own patterns) and whatever ``detectors`` (objects with
    ``find(text)`` returning spans with ``start``, ``end`` and ``kind``, as registered through
    ``register_redactors``) find."""
    spans: list[tuple[int, int, str]] = []
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            if kind == "SECRET":  # keep the key name, hide the value
                spans.append((match.start(3), match.end(3), kind))
            else:
                spans.append((match.start(), match.end(), kind))
    for detector in detectors:
        try:
            found = detector.find(text)
        except Exception:  # noqa: S112  # a broken detector must not break the LLM call
            continue
        spans.extend((s.start, s.end, str(s.kind)) for s in found)
    if not spans:
        return text
    spans.sort(key=lambda s: (s[0], -s[1]))
    out: list[str] = []
    at = 0
    for start, end, kind in spans:
        if start < at:  # overlaps an earlier span: extend it
            if end > at:
                at = end
            continue
        out.append(text[at:start])
        out.append(f"<{kind}>")
        at = end
    out.append(text[at:])
    return "".join(out)


def _masked_messages(messages: Any, detectors: Sequence[Any]) -> str:
    return mask(json.dumps(messages, default=str, ensure_ascii=False), detectors)


# -- Propagation -----------------------------------------------------------------------------


def inject(headers: dict[str, str], context: Any = None) -> dict[str, str]:
    """Add ``traceparent`` (and ``tracestate``) of ``context`` (default: the current one) to
    ``headers``; nothing when there is no valid span. Returns ``headers``."""
    _PROPAGATOR.inject(headers, context=context)
    return headers


# -- LLM client spans ------------------------------------------------------------------------


class LLMCall:
    """The span of one LLM request: headers to send, then what came back."""

    def __init__(self, span: Any, *, options: GenAIOptions, detectors: Sequence[Any]) -> None:
        self.span = span
        self._options = options
        self._detectors = detectors

    def headers(self) -> dict[str, str]:
        """``traceparent`` of this span, to send with the request."""
        return inject({}, trace.set_span_in_context(self.span))

    def prompt(self, messages: Any) -> None:
        """Record the request's messages (only when content capture is on; masked)."""
        if not self._options.capture_content or not self.span.is_recording():
            return
        text = _masked_messages(messages, self._detectors)
        if self._options.latest:
            self.span.set_attribute("gen_ai.input.messages", text)
        else:
            self.span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": text})

    def response(
        self,
        *,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        finish_reason: str | None,
        message: Any = None,
    ) -> None:
        """Record the answer: response model, token usage, finish reason, content."""
        span = self.span
        if not span.is_recording():
            return
        if model:
            span.set_attribute("gen_ai.response.model", model)
        if input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        if output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
        if message is not None and self._options.capture_content:
            text = _masked_messages([message], self._detectors)
            if self._options.latest:
                span.set_attribute("gen_ai.output.messages", text)
            else:
                span.add_event("gen_ai.content.completion", {"gen_ai.completion": text})


@contextmanager
def llm_client_span(
    tracer: trace.Tracer | None,
    *,
    model: str,
    base_url: str,
    provider: str,
    backend: str,
    options: GenAIOptions | None = None,
    detectors: Sequence[Any] = (),
    operation: str = "chat",
) -> Iterator[LLMCall]:
    """A ``CLIENT`` span around one LLM request (a no-op one without ``tracer``; its
    ``headers()`` then still carry the current context's ``traceparent``). An exception
    escaping the block marks the span as an error with ``error.type``."""
    options = options or GenAIOptions()
    if tracer is None:
        yield LLMCall(trace.get_current_span(), options=options, detectors=detectors)
        return
    parts = urlsplit(base_url)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": model,
        "server.address": parts.hostname or "",
        names.ATTR_BACKEND: backend,
    }
    if parts.port is not None:
        attributes["server.port"] = parts.port
    attributes["gen_ai.provider.name" if options.latest else "gen_ai.system"] = provider
    name = names.span_name(names.SPAN_CHAT, **{"gen_ai.request.model": model})
    # Not made current: a stream's span lives across yields of an async generator, where an
    # attached context could be detached from another task; ``headers()`` names it instead.
    span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    try:
        yield LLMCall(span, options=options, detectors=detectors)
    except GeneratorExit:  # the caller stopped reading a stream: not an error of the call
        raise
    except BaseException as exc:
        span.set_attribute("error.type", getattr(exc, "code", None) or type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()
