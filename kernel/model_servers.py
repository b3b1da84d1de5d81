"""Model servers: remote inference of registered classic models (KServe v2, Triton, ...).

A kind of server is a plugin (``register_model_servers`` registers a ``ModelServerKind``, a
named factory); the kernel builds one ``ModelServer`` per configured ``ModelServerConfig``
(``[[model_servers]]`` in ``kernos.toml``) and hands them to the model runtime, which sends
the models each one names there instead of running them with onnxruntime in-process. The
registry still decides which version answers (live, canary, shadow) and verifies it before
the first remote call: a server only ever sees requests for versions the registry vouches for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kernos.kernel.errors import ConfigError

if TYPE_CHECKING:
    from kernos.kernel.telemetry import Telemetry

__all__ = [
    "ModelServer",
    "ModelServerConfig",
    "ModelServerKind",
    "build_model_servers",
    "check_model_servers",
    "model_client_span",
]

_SCHEMES = {"http": ("http", False), "https": ("http", True), "grpc": ("grpc", False)}
_SCHEMES["grpcs"] = ("grpc", True)


class ModelServerConfig(BaseModel):
    """One configured model server (``[[model_servers]]`` in ``kernos.toml``, or
    ``KERNOS_MODEL_SERVERS`` as a JSON list)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    """How logs, spans and errors refer to this server."""
    kind: str = "triton"
    """Which registered ``ModelServerKind`` builds it (``triton``: any KServe v2 server)."""
    url: str
    """Where it listens: ``http://host:port`` (``https://`` for TLS) for the HTTP protocol,
    ``grpc://host:port`` or ``host:port`` (``grpcs://`` for TLS) for gRPC."""
    protocol: Literal["http", "grpc"] = "http"
    """Wire protocol: KServe v2 over HTTP/REST or over gRPC."""
    models: list[str] = Field(min_length=1)
    """Registry names of the models this server serves (under the same names; the version
    asked for is the registry's version string)."""
    timeout: float = Field(default=10.0, gt=0, le=3600)
    """Seconds one inference may take, connecting included."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Kind-specific options."""

    @model_validator(mode="before")
    @classmethod
    def _protocol_from_scheme(cls, data: Any) -> Any:
        # A grpc:// URL says the protocol; saying it twice must not be required.
        if isinstance(data, dict) and "protocol" not in data and isinstance(data.get("url"), str):
            scheme = data["url"].split("://", 1)[0] if "://" in data["url"] else "grpc"
            if scheme in ("grpc", "grpcs"):
                data = {**data, "protocol": "grpc"}
        return data

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: list[str]) -> list[str]:
        from kernos.kernel.errors import InvalidInput
        from kernos.kernel.model_records import check_model_name

        for name in value:
            try:
                check_model_name(name)
            except InvalidInput as exc:
                raise ValueError(exc.message) from None
        if len(set(value)) != len(value):
            raise ValueError("a model is listed twice")
        return value

    @model_validator(mode="after")
    def _check_url(self) -> ModelServerConfig:
        text = self.url if "://" in self.url else f"grpc://{self.url}"
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"url {self.url!r} is not a server address ({exc})") from None
        scheme = _SCHEMES.get(parts.scheme)
        if scheme is None or not parts.hostname or port is None:
            raise ValueError(
                f"url {self.url!r}: use http(s)://host:port for HTTP or grpc(s)://host:port "
                "(or host:port) for gRPC"
            )
        if scheme[0] != self.protocol:
            raise ValueError(
                f"url {self.url!r} is a {scheme[0]} address but protocol is {self.protocol!r}"
            )
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(f"url {self.url!r}: give host and port only (no path)")
        return self

    @property
    def address(self) -> str:
        """``host:port`` of the server."""
        parts = urlsplit(self.url if "://" in self.url else f"grpc://{self.url}")
        return f"{parts.hostname}:{parts.port}"

    @property
    def tls(self) -> bool:
        """Whether the connection uses TLS (``https://`` or ``grpcs://``)."""
        return self.url.startswith(("https://", "grpcs://"))


class ModelServer(ABC):
    """A server that runs registered models by name and version.

    Implementations are async (no thread-pool cap) and raise ``KernosError``s: ``BackendError``
    with ``retryable`` True when the server cannot be reached or is overloaded, ``NotFound``
    when it does not serve the model or version, ``InvalidInput`` when it refuses the inputs.
    """

    def __init__(self, config: ModelServerConfig) -> None:
        self.config = config
        self.telemetry: Telemetry | None = None
        """The kernel's telemetry, set by the model runtime: a server opens a client span per
        call with it and sends that span's ``traceparent``."""

    @property
    def name(self) -> str:
        """The configured name."""
        return self.config.name

    @abstractmethod
    async def infer(self, model: str, version: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``model@version`` on ``inputs`` (input name → numpy array); the outputs by name."""

    @abstractmethod
    async def health(self) -> None:
        """Return when the server is live and ready; raise ``BackendError`` when not."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the kernel calls it at shutdown."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelServerKind:
    """A kind of model server a plugin provides: ``build(config)`` returns a ``ModelServer``."""

    name: str
    build: Callable[[ModelServerConfig], ModelServer]
    description: str = ""
    plugin: str = ""


def check_model_servers(
    configs: Iterable[ModelServerConfig], kinds: Mapping[str, ModelServerKind]
) -> None:
    """Refuse a set of server configurations before anything is built: ``ConfigError`` for a
    duplicate name, an unknown kind (naming the known ones) or a model two servers claim."""
    names: set[str] = set()
    owners: dict[str, str] = {}
    for config in configs:
        if config.name in names:
            raise ConfigError(f"model_servers: two servers are named {config.name!r}")
        names.add(config.name)
        if config.kind not in kinds:
            known = ", ".join(sorted(kinds)) or "none (no plugin registers one)"
            raise ConfigError(
                f"model_servers: server {config.name!r} has unknown kind {config.kind!r}; "
                f"known kinds: {known}"
            )
        for model in config.models:
            if model in owners:
                raise ConfigError(
                    f"model_servers: model {model!r} is served by both {owners[model]!r} and "
                    f"{config.name!r}; list it under one server"
                )
            owners[model] = config.name


def build_model_servers(
    configs: Iterable[ModelServerConfig], kinds: Mapping[str, ModelServerKind]
) -> list[ModelServer]:
    """One ``ModelServer`` per configuration, after ``check_model_servers``. Building opens
    no connection. ``ConfigError`` naming the server when a kind refuses its configuration."""
    configs = list(configs)
    check_model_servers(configs, kinds)
    built: list[ModelServer] = []
    for config in configs:
        try:
            built.append(kinds[config.kind].build(config))
        except ConfigError as exc:
            raise ConfigError(f"model_servers: server {config.name!r}: {exc.message}") from None
        except Exception as exc:
            raise ConfigError(
                f"model_servers: server {config.name!r} (kind {config.kind!r}) could not be "
                f"built: {type(exc).__name__}: {exc}"
            ) from exc
    return built


@contextmanager
def model_client_span(
    server: ModelServer, *, model: str, version: str, protocol: str
) -> Iterator[dict[str, str]]:
    """A ``CLIENT`` span ``kernos.model.infer {model}`` around one remote inference, under the
    current span (the syscall's), when the server has telemetry; yields the ``traceparent``
    headers (or gRPC metadata) to send with the request, naming this span (or, without
    telemetry, the current one). An exception leaving the block marks the span failed with
    ``error.type``."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from kernos.kernel import telemetry as names
    from kernos.kernel.genai import inject

    telemetry = server.telemetry
    if telemetry is None:
        yield inject({})
        return
    host, _, port = server.config.address.rpartition(":")
    attributes: dict[str, Any] = {
        names.ATTR_MODEL: model,
        names.ATTR_MODEL_VERSION: version,
        names.ATTR_MODEL_SERVER: server.name,
        "server.address": host,
        "server.port": int(port),
        "network.protocol.name": protocol,
    }
    name = names.span_name(names.SPAN_MODEL_INFER, **{names.ATTR_MODEL: model})
    span = telemetry.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    try:
        yield inject({}, trace.set_span_in_context(span))
    except BaseException as exc:
        span.set_attribute("error.type", getattr(exc, "code", None) or type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()
