"""The LLM backend contract: what the scheduler dispatches ``llm.chat`` syscalls to.

Backends are plugins (``register_llm_backends`` registers a ``BackendKind``, a named factory);
the kernel builds one ``LLMBackend`` per configured ``BackendConfig`` and hands them to the
scheduler. Requests and answers use the OpenAI chat-completions wire shapes (messages, tool
calls, ``response_format``) because every server we talk to speaks them, and so a recorded
exchange reads the same as a live one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from kernos.kernel.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from kernos.kernel.settings import Settings
    from kernos.kernel.telemetry import Telemetry

__all__ = [
    "BackendConfig",
    "BackendError",
    "BackendKind",
    "BackendLoad",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "LLMBackend",
    "build_backends",
    "check_backends",
    "configured_backends",
]

DEFAULT_BACKEND = "default"
"""Name of the backend the ``KERNOS_LLM_*`` variables configure."""


class BackendConfig(BaseModel):
    """One configured backend (``[[llm_backends]]`` in ``kernos.toml``, or the ``KERNOS_LLM_*``
    variables, which make one named ``default``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    """How processes and the fallback chain refer to this backend."""
    kind: str = "openai_compat"
    """Which registered ``BackendKind`` builds it: ``openai_compat``, ``vllm``, ``triton``,
    ``sim-llm``, or a third-party kind."""
    base_url: str | None = None
    """The server's base URL (``http://host:port/v1`` for OpenAI-compatible servers)."""
    model: str | None = None
    """Model name sent to the server."""
    api_key: SecretStr | None = None
    """Bearer key for the server; never logged."""
    concurrency: int = Field(default=64, ge=1, le=10_000)
    """Most requests in flight at once: a continuous-batching server should see all it can take."""
    queue_limit: int = Field(default=1_024, ge=0, le=1_000_000)
    """Most requests waiting for this backend; beyond it a request is refused (backpressure)."""
    timeout_seconds: float = Field(default=120.0, gt=0)
    """Per-attempt timeout of one request."""
    max_retries: int = Field(default=2, ge=0, le=10)
    """Retries of a retryable failure (refused, 5xx, timeout), with backoff and jitter."""
    fallback: list[str] = Field(default_factory=list)
    """Backends to try, in order, when this one fails or its breaker is open."""
    price_in_per_1k: float = Field(default=0.0, ge=0)
    """Cost of 1,000 input tokens (for accounting; the registry's price wins when it has one)."""
    price_out_per_1k: float = Field(default=0.0, ge=0)
    """Cost of 1,000 output tokens."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Kind-specific options (for example ``grpc = true`` for Triton)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """One chat completion, in OpenAI wire shapes.

    ``messages`` are OpenAI message dicts (``role``, ``content``, ``tool_calls``, ``tool_call_id``);
    ``tools`` OpenAI function-tool dicts. ``extra_body`` passes server-specific fields through
    unchanged (vLLM's guided decoding, for example).
    """

    messages: list[dict[str, Any]]
    model: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    response_format: dict[str, Any] | None = None
    extra_body: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatResponse:
    """A finished completion: the assistant message (an OpenAI message dict) and its usage."""

    message: dict[str, Any]
    model: str
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    backend: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatChunk:
    """One streamed piece: a content delta and/or tool-call deltas (OpenAI ``delta`` shapes).

    The last chunk of a stream carries ``finish_reason`` and, when the server reports it,
    the usage.
    """

    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendLoad:
    """What a server says of its own load (vLLM's ``/metrics``); ``None`` fields are unknown."""

    running: int | None = None
    waiting: int | None = None
    kv_cache_usage: float | None = None


class LLMBackend(ABC):
    """A server (or library) that answers chat completions.

    Implementations are async all the way down (no thread-pool cap on concurrency) and raise
    ``BackendError`` for every failure, with ``retryable`` set honestly: the scheduler retries,
    trips breakers and falls back on that flag alone.
    """

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.telemetry: Telemetry | None = None
        """The kernel's telemetry, set by the scheduler: backends that make HTTP calls open
        GenAI client spans with it and send their ``traceparent``."""

    @property
    def name(self) -> str:
        """The configured name."""
        return self.config.name

    @abstractmethod
    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Answer one request; raises ``BackendError``."""

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Answer one request as chunks (an async generator); raises ``BackendError``."""

    @abstractmethod
    async def models(self) -> list[str]:
        """Model names the server offers; raises ``BackendError``."""

    async def health(self) -> None:
        """Return when the server is healthy; raise ``BackendError`` when not."""
        await self.models()

    async def load(self) -> BackendLoad | None:
        """The server's own load figures, or ``None`` when it publishes none."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the kernel calls it at shutdown."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendKind:
    """A kind of backend a plugin provides: ``build(config)`` returns an ``LLMBackend``."""

    name: str
    build: Callable[[BackendConfig], LLMBackend]
    description: str = ""
    plugin: str = ""


def configured_backends(settings: Settings) -> list[BackendConfig]:
    """The backends ``settings`` configure: ``[[llm_backends]]`` from ``kernos.toml``, plus one
    ``openai_compat`` backend named ``default`` when ``KERNOS_LLM_BASE_URL`` is set (with
    ``KERNOS_LLM_MODEL`` and ``KERNOS_LLM_API_KEY``).

    Raises ``ConfigError`` when the variables are set without a base URL, or when a configured
    backend is already named ``default``.
    """
    configs = list(settings.llm_backends)
    if settings.llm_base_url is None:
        if settings.llm_model is not None or settings.llm_api_key is not None:
            raise ConfigError(
                "KERNOS_LLM_MODEL or KERNOS_LLM_API_KEY is set but KERNOS_LLM_BASE_URL is not; "
                "set the server's base URL (http://host:port/v1) too"
            )
        return configs
    if any(c.name == DEFAULT_BACKEND for c in configs):
        raise ConfigError(
            f"KERNOS_LLM_BASE_URL configures a backend named {DEFAULT_BACKEND!r}, and "
            f"llm_backends in kernos.toml has one too; rename that one or unset the variable"
        )
    configs.append(
        BackendConfig(
            name=DEFAULT_BACKEND,
            kind="openai_compat",
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key,
        )
    )
    return configs


def check_backends(configs: Iterable[BackendConfig], kinds: Mapping[str, BackendKind]) -> None:
    """Refuse a set of backend configurations before anything is built.

    Raises ``ConfigError`` for a duplicate name, an unknown kind (naming the known ones) or a
    fallback that names no configured backend (or the backend itself).
    """
    configs = list(configs)
    names: set[str] = set()
    for config in configs:
        if config.name in names:
            raise ConfigError(f"llm_backends: two backends are named {config.name!r}")
        names.add(config.name)
    for config in configs:
        if config.kind not in kinds:
            known = ", ".join(sorted(kinds)) or "none (no plugin registers one)"
            raise ConfigError(
                f"llm_backends: backend {config.name!r} has unknown kind {config.kind!r}; "
                f"known kinds: {known}"
            )
        for other in config.fallback:
            if other == config.name or other not in names:
                what = "itself" if other == config.name else "no configured backend"
                raise ConfigError(
                    f"llm_backends: backend {config.name!r} falls back to {other!r}, which is "
                    f"{what}; configured: {', '.join(sorted(names))}"
                )


def build_backends(
    configs: Iterable[BackendConfig], kinds: Mapping[str, BackendKind]
) -> dict[str, LLMBackend]:
    """Build one ``LLMBackend`` per configuration, by name, after ``check_backends``.

    Raises ``ConfigError`` as ``check_backends`` does, or when a kind's ``build`` refuses its
    configuration or fails (its message is kept, naming the backend). Backends built before
    the failure hold no connections yet, so nothing needs closing.
    """
    configs = list(configs)
    check_backends(configs, kinds)
    built: dict[str, LLMBackend] = {}
    for config in configs:
        try:
            built[config.name] = kinds[config.kind].build(config)
        except ConfigError as exc:
            named = repr(config.name) in exc.message
            prefix = "llm_backends: " + ("" if named else f"backend {config.name!r}: ")
            raise ConfigError(prefix + exc.message) from None
        except Exception as exc:
            raise ConfigError(
                f"llm_backends: backend {config.name!r} (kind {config.kind!r}) could not be "
                f"built: {type(exc).__name__}: {exc}"
            ) from exc
    return built
