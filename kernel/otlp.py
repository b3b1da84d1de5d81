"""OTLP/HTTP export of a kernel's spans and metrics, configured by OpenTelemetry's variables.

Kernos exports through its *own* providers (``kernos.kernel.telemetry.Telemetry``), so these
exporters carry Kernos's telemetry only and leave any global OpenTelemetry set-up alone.
Configuration follows the OpenTelemetry SDK specification, read from a mapping handed in (the
CLI passes ``os.environ``; nothing deeper reads the environment):

- ``OTEL_EXPORTER_OTLP_ENDPOINT``: base URL; traces go to ``{base}/v1/traces``, metrics to
  ``{base}/v1/metrics``. ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` and
  ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` are used as they are and win over the base.
- ``OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_HEADERS`` (``k=v,k2=v2``, values URL-encoded) and
  ``…_TIMEOUT`` (seconds); certificates and compression are read by the exporter itself.
- ``OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_PROTOCOL``: only ``http/protobuf`` (the default).
- ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` = ``none`` turns that signal's export
  off; ``OTEL_METRIC_EXPORT_INTERVAL`` (ms, default 60000) paces metric export.
- ``OTEL_SERVICE_NAME`` names the service (default ``kernos``).
- ``OTEL_SEMCONV_STABILITY_OPT_IN`` and ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``:
  GenAI attribute names and message content (``kernos.kernel.genai``).

``KERNOS_TRACING=false`` (``Settings.tracing``) records no Kernos spans at all; metrics stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from kernos.kernel.errors import ConfigError
from kernos.kernel.telemetry import Telemetry

PROTOCOL = "http/protobuf"
"""The one OTLP protocol Kernos exports with."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalExport:
    """Where one signal (traces or metrics) goes."""

    endpoint: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OtlpConfig:
    """What the ``OTEL_*`` variables ask for; a signal is ``None`` when it is not exported."""

    service_name: str = "kernos"
    traces: SignalExport | None = None
    metrics: SignalExport | None = None
    metric_interval_ms: int = 60_000

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> OtlpConfig:
        """Read the configuration; raises ``ConfigError`` on a value that cannot work."""
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        return cls(
            service_name=environ.get("OTEL_SERVICE_NAME", "").strip() or "kernos",
            traces=_signal(environ, "TRACES", base, "v1/traces"),
            metrics=_signal(environ, "METRICS", base, "v1/metrics"),
            metric_interval_ms=_int(environ, "OTEL_METRIC_EXPORT_INTERVAL", 60_000),
        )


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number of milliseconds") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive, not {number}")
    return number


def parse_headers(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` (values URL-encoded) as OpenTelemetry's ``…_HEADERS`` variables hold."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"OTLP header {item.strip()!r} is not key=value (OTEL_EXPORTER_OTLP_HEADERS)"
            )
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def _signal(environ: Mapping[str, str], signal: str, base: str, path: str) -> SignalExport | None:
    selected = environ.get(f"OTEL_{signal}_EXPORTER", "otlp").strip().lower() or "otlp"
    if selected == "none":
        return None
    if selected != "otlp":
        raise ConfigError(
            f"OTEL_{signal}_EXPORTER={selected!r} is not supported: Kernos exports over "
            "otlp (or none)"
        )
    specific = environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "").strip()
    endpoint = specific or (f"{base.rstrip('/')}/{path}" if base else "")
    if not endpoint:
        return None
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"OTLP endpoint {endpoint!r} must be an http:// or https:// URL")
    protocol = (
        environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
        or PROTOCOL
    ).strip()
    if protocol != PROTOCOL:
        raise ConfigError(
            f"OTLP protocol {protocol!r} is not supported: Kernos exports {PROTOCOL} "
            "(OTEL_EXPORTER_OTLP_PROTOCOL)"
        )
    headers = parse_headers(environ.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    headers.update(parse_headers(environ.get(f"OTEL_EXPORTER_OTLP_{signal}_HEADERS", "")))
    timeout_ms = _int(
        environ,
        f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT",
        _int(environ, "OTEL_EXPORTER_OTLP_TIMEOUT", 10_000),
    )
    return SignalExport(endpoint=endpoint, headers=headers, timeout=timeout_ms / 1000)


def span_processors(config: OtlpConfig) -> list[SpanProcessor]:
    """A batch processor exporting to the traces endpoint, if one is configured."""
    if config.traces is None:
        return []
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(
        endpoint=config.traces.endpoint,
        headers=config.traces.headers,
        timeout=config.traces.timeout,
    )
    return [BatchSpanProcessor(exporter)]


def metric_readers(config: OtlpConfig) -> list[MetricReader]:
    """A periodic reader exporting to the metrics endpoint, if one is configured."""
    if config.metrics is None:
        return []
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(
        endpoint=config.metrics.endpoint,
        headers=config.metrics.headers,
        timeout=config.metrics.timeout,
    )
    return [
        PeriodicExportingMetricReader(exporter, export_interval_millis=config.metric_interval_ms)
    ]


def telemetry_from_environ(environ: Mapping[str, str], *, tracing: bool = True) -> Telemetry:
    """A kernel's ``Telemetry`` with the OTLP exporters the ``OTEL_*`` variables ask for;
    ``tracing=False`` (``Settings.tracing``) records no spans.

    Call ``shutdown()`` on it when the kernel has stopped: that flushes what is buffered.
    """
    from kernos.kernel.genai import options_from_environ

    config = OtlpConfig.from_environ(environ)
    return Telemetry(
        service_name=config.service_name,
        genai=options_from_environ(environ),
        tracing=tracing,
        span_processors=span_processors(config) if tracing else [],
        metric_readers=metric_readers(config),
    )
