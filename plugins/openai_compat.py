"""The ``openai_compat`` backend kind: any OpenAI-compatible chat-completions server.

Ollama, llama.cpp's server, ``transformers serve``, vLLM and hosted APIs all speak
``POST {base_url}/chat/completions`` and ``GET {base_url}/models``. One shared
``httpx.AsyncClient`` per backend, its pool sized above the backend's ``concurrency``, so a
continuous-batching server sees every request the scheduler lets through (no thread pool, no
smaller cap). Every failure is a ``BackendError`` whose ``retryable`` is honest: refused or
dropped connections, timeouts, 408, 429 and 5xx may succeed on a retry; any other 4xx or an
answer that is not a chat completion will not. Messages name the backend and the status,
never the API key.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from kernos.kernel.errors import ConfigError
from kernos.kernel.genai import LLMCall, inject, llm_client_span
from kernos.kernel.llm import (
    BackendConfig,
    BackendError,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    LLMBackend,
)

if TYPE_CHECKING:
    import httpx

KIND = "openai_compat"

_EXCERPT = 300  # characters of a server's error body quoted in a message
_SPARE_CONNECTIONS = 4  # above concurrency: health, models and metrics calls never wait


def retryable_status(status: int) -> bool:
    """Whether an HTTP status may succeed on a retry: 408, 429 and every 5xx."""
    return status in (408, 429) or status >= 500


class OpenAICompatBackend(LLMBackend):
    """A backend on an OpenAI-compatible server at ``config.base_url`` (``…/v1``).

    ``config.model`` names the model; without it, the request's model, else the first one
    the server lists. ``config.options`` may hold ``headers`` (extra request headers, such as
    an organisation) and ``connect_timeout_seconds``.
    """

    def __init__(self, config: BackendConfig, *, transport: httpx.AsyncBaseTransport | None = None):
        super().__init__(config)
        if not config.base_url:
            raise ConfigError(
                f"backend {config.name!r} (kind {config.kind!r}) needs base_url, the server's "
                "OpenAI-compatible base URL (http://host:port/v1)"
            )
        import httpx

        parts = urlsplit(config.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"backend {config.name!r}: base_url must be an http(s) URL, got "
                f"{_shown_url(config.base_url)!r}"
            )
        self._base_url = config.base_url.rstrip("/")
        self._shown = _shown_url(self._base_url)
        headers = {str(k): str(v) for k, v in dict(config.options.get("headers", {})).items()}
        self._secret = config.api_key.get_secret_value() if config.api_key else ""
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        connect = float(config.options.get("connect_timeout_seconds", 10.0))
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(
                config.timeout_seconds, connect=min(connect, config.timeout_seconds)
            ),
            limits=httpx.Limits(
                max_connections=config.concurrency + _SPARE_CONNECTIONS,
                max_keepalive_connections=config.concurrency + _SPARE_CONNECTIONS,
            ),
            transport=transport,
            follow_redirects=False,
        )
        self._default_model: str | None = config.model

    # -- URLs -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The configured base URL (``…/v1``), without a trailing slash."""
        return self._base_url

    @property
    def server_root(self) -> str:
        """The server's root URL: the base URL without its ``/v1`` (where vLLM serves
        ``/health`` and ``/metrics``)."""
        root = self._base_url
        return root[: -len("/v1")] if root.endswith("/v1") else root

    # -- The contract -----------------------------------------------------------------------

    PROVIDER = "openai"
    """``gen_ai.system`` / ``gen_ai.provider.name`` of this backend's spans."""

    def _span(self, model: str) -> Any:
        """The GenAI client span of one request (see ``kernos.kernel.genai``)."""
        telemetry = self.telemetry
        return llm_client_span(
            telemetry.tracer if telemetry is not None else None,
            model=model,
            base_url=self._base_url,
            provider=self.PROVIDER,
            backend=self.name,
            options=telemetry.genai if telemetry is not None else None,
            detectors=telemetry.content_detectors if telemetry is not None else (),
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """POST ``/chat/completions`` and return its first choice; raises ``BackendError``."""
        body = await self.request_body(request, stream=False)
        call: LLMCall
        with self._span(str(body["model"])) as call:
            call.prompt(body["messages"])
            data = await self._call(
                "POST",
                f"{self._base_url}/chat/completions",
                json_body=body,
                headers=call.headers(),
            )
            try:
                choice = data["choices"][0]
                message = _message(choice["message"])
                usage = data.get("usage") or {}
                response = ChatResponse(
                    message=message,
                    model=str(data.get("model") or body["model"]),
                    finish_reason=choice.get("finish_reason"),
                    input_tokens=int(usage.get("prompt_tokens") or 0),
                    output_tokens=int(usage.get("completion_tokens") or 0),
                    backend=self.name,
                )
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise self._malformed(
                    f"not a chat completion ({type(exc).__name__}: {exc})"
                ) from None
            call.response(
                model=response.model,
                input_tokens=response.input_tokens,
                output_tokens=response.output_tokens,
                finish_reason=response.finish_reason,
                message=message,
            )
            return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """POST ``/chat/completions`` with ``stream: true`` and yield its deltas.

        Content and tool-call deltas come as they arrive; one last chunk carries the finish
        reason and the usage (``stream_options.include_usage``), whether the server sent
        them together or in two events. A stream that ends before a finish reason is a
        retryable ``BackendError`` (the connection dropped).
        """

        body = await self.request_body(request, stream=True)
        url = f"{self._base_url}/chat/completions"
        finish: str | None = None
        usage: dict[str, Any] | None = None
        model: str | None = None
        text: list[str] = []
        call: LLMCall
        with self._span(str(body["model"])) as call:
            call.prompt(body["messages"])
            async for chunk in self._stream_chunks(url, body, call, text):
                if chunk.finish_reason is not None:
                    finish = chunk.finish_reason
                    usage = chunk.usage
                    model = chunk.model
                    continue
                yield chunk.chunk
            if finish is None:
                raise BackendError(
                    f"backend {self.name!r} ({self._shown}): the stream ended before the "
                    "answer finished (connection dropped?); retryable",
                    retryable=True,
                )
            input_tokens = None if usage is None else int(usage.get("prompt_tokens") or 0)
            output_tokens = None if usage is None else int(usage.get("completion_tokens") or 0)
            call.response(
                model=model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                finish_reason=finish,
                message={"role": "assistant", "content": "".join(text)},
            )
        yield ChatChunk(
            finish_reason=finish, input_tokens=input_tokens, output_tokens=output_tokens
        )

    async def _stream_chunks(
        self, url: str, body: dict[str, Any], call: LLMCall, text: list[str]
    ) -> AsyncIterator[_Streamed]:
        """The stream's content chunks, then one ``_Streamed`` with its finish reason."""
        import httpx

        finish: str | None = None
        usage: dict[str, Any] | None = None
        model: str | None = None
        try:
            async with self._client.stream(
                "POST", url, json=body, headers=call.headers()
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status_error(response)
                async for event in _sse_events(response.aiter_lines()):
                    if event == "[DONE]":
                        break
                    data = self._decode(event)
                    if "error" in data:
                        raise self._stream_error(data["error"])
                    if data.get("usage"):
                        usage = data["usage"]
                    model = model or data.get("model")
                    for choice in data.get("choices") or []:
                        if choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta") or {}
                        content = delta.get("content") or ""
                        tool_calls = list(delta.get("tool_calls") or [])
                        if content or tool_calls:
                            text.append(content)
                            yield _Streamed(chunk=ChatChunk(content=content, tool_calls=tool_calls))
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if finish is not None:
            yield _Streamed(finish_reason=finish, usage=usage, model=model)

    async def models(self) -> list[str]:
        """GET ``/models``: the ids the server lists; raises ``BackendError``."""
        data = await self._call("GET", f"{self._base_url}/models")
        try:
            return [str(item["id"]) for item in data["data"]]
        except (KeyError, TypeError) as exc:
            raise self._malformed(f"not a model list ({type(exc).__name__}: {exc})") from None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    # -- Building requests ------------------------------------------------------------------

    async def request_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body for ``request``: OpenAI fields that are set, then ``extra_body``
        merged on top unchanged (server-specific fields such as vLLM's guided decoding)."""
        body: dict[str, Any] = {
            "model": await self._model_for(request),
            "messages": request.messages,
        }
        optional = {
            "tools": request.tools,
            "tool_choice": request.tool_choice,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": request.stop,
            "response_format": request.response_format,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.extra_body:
            body.update(request.extra_body)
        return body

    async def _model_for(self, request: ChatRequest) -> str:
        if self._default_model is not None:
            return self._default_model
        if request.model is not None:
            return request.model
        names = await self.models()
        if not names:
            raise BackendError(
                f"backend {self.name!r} ({self._shown}) lists no models; set model in its "
                "configuration",
                retryable=False,
            )
        self._default_model = names[0]
        return names[0]

    # -- Calling and classifying ------------------------------------------------------------

    async def _call(
        self,
        method: str,
        url: str,
        *,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        import httpx

        try:
            response = await self._client.request(
                method, url, json=json_body, headers=headers if headers is not None else inject({})
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 300:
            raise self._status_error(response)
        return self._decode(response.text)

    def _decode(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError:
            raise self._malformed(f"not JSON: {self._excerpt(text)!r}") from None
        if not isinstance(data, dict):
            raise self._malformed(f"not a JSON object: {self._excerpt(text)!r}")
        return data

    def _transport_error(self, exc: Exception) -> BackendError:
        import httpx

        if isinstance(exc, httpx.TimeoutException):
            what = f"timed out ({type(exc).__name__}, limit {self.config.timeout_seconds:g} s)"
        elif isinstance(exc, httpx.ConnectError):
            what = f"cannot connect ({self._excerpt(str(exc)) or type(exc).__name__})"
        elif isinstance(exc, httpx.TransportError):
            what = f"connection failed ({type(exc).__name__}: {self._excerpt(str(exc))})"
        else:  # an invalid URL or similar: trying again changes nothing
            return BackendError(
                f"backend {self.name!r} ({self._shown}): request failed "
                f"({type(exc).__name__}: {self._excerpt(str(exc))}); not retryable",
                retryable=False,
            )
        return BackendError(
            f"backend {self.name!r} ({self._shown}): {what}; retryable", retryable=True
        )

    def _status_error(self, response: httpx.Response) -> BackendError:
        status = response.status_code
        retryable = retryable_status(status)
        detail = self._server_message(response.text)
        return BackendError(
            f"backend {self.name!r} ({self._shown}): HTTP {status} {response.reason_phrase}"
            + (f": {detail}" if detail else "")
            + ("; retryable" if retryable else "; not retryable"),
            retryable=retryable,
            status=status,
        )

    def _stream_error(self, error: Any) -> BackendError:
        """An error event inside a stream (vLLM sends ``{"error": {..., "code": 500}}``)."""
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and 100 <= code < 600 else None
        retryable = status is not None and retryable_status(status)
        detail = self._server_message(json.dumps(error) if not isinstance(error, str) else error)
        return BackendError(
            f"backend {self.name!r} ({self._shown}): error inside the stream"
            + (f" (status {status})" if status else "")
            + f": {detail}"
            + ("; retryable" if retryable else "; not retryable"),
            retryable=retryable,
            status=status,
        )

    def _malformed(self, what: str) -> BackendError:
        return BackendError(
            f"backend {self.name!r} ({self._shown}): unexpected answer, {what}; not retryable",
            retryable=False,
        )

    def _server_message(self, text: str) -> str:
        """The server's own error message (OpenAI ``{"error": {"message"}}``, vLLM
        ``{"message"}``, FastAPI ``{"detail"}``), or an excerpt of the body."""
        try:
            data = json.loads(text)
        except ValueError:
            return self._excerpt(text)
        found: Any = data
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict):
                found = error.get("message", error)
            elif error is not None:
                found = error
            elif "message" in data:
                found = data["message"]
            elif "detail" in data:
                found = data["detail"]
        return self._excerpt(found if isinstance(found, str) else json.dumps(found))

    def _excerpt(self, text: str) -> str:
        text = " ".join(text.split())
        if self._secret:
            text = text.replace(self._secret, "***")
        return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Streamed:
    """One item of a stream: a content chunk, or the end (finish reason, usage, model)."""

    chunk: ChatChunk = field(default_factory=ChatChunk)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    model: str | None = None


def _message(raw: Any) -> dict[str, Any]:
    """An assistant message dict with ``role``, ``content`` and, when present, ``tool_calls``."""
    if not isinstance(raw, dict):
        raise TypeError("message is not an object")
    message: dict[str, Any] = {
        "role": raw.get("role") or "assistant",
        "content": raw.get("content"),
    }
    if raw.get("tool_calls"):
        message["tool_calls"] = list(raw["tool_calls"])
    for extra in ("reasoning_content", "refusal"):
        if raw.get(extra) is not None:
            message[extra] = raw[extra]
    return message


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Server-sent events' data, one string per event (multi-line data joined with ``\\n``)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _shown_url(url: str) -> str:
    """A URL safe for messages and logs: no user info, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
