"""Names of every span and metric Kernos emits, and the tracer and meter that emit them.

All names live here so that emitters (kernel, scheduler, plugins) and exporters (the
observability issue: Prometheus, OTLP) agree, and so dashboards can rely on them. GenAI names
follow the OpenTelemetry GenAI semantic conventions. Kernos builds its *own* tracer and meter
providers rather than installing global ones: switching Kernos telemetry off, or exporting it
somewhere, leaves any other OpenTelemetry user in the process alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

INSTRUMENTATION_SCOPE = "kernos"

# -- Spans -----------------------------------------------------------------------------------
# Templates are formatted with the attribute named in braces (GenAI convention: operation name
# followed by the most specific identifier).

SPAN_CHAT = "chat {gen_ai.request.model}"
SPAN_EXECUTE_TOOL = "execute_tool {gen_ai.tool.name}"
SPAN_INVOKE_AGENT = "invoke_agent {gen_ai.agent.name}"
SPAN_EMBEDDINGS = "embeddings {gen_ai.request.model}"
SPAN_SYSCALL = "kernos.syscall {kernos.syscall.kind}"
SPAN_PROCESS_STEP = "kernos.process.step {kernos.agent.name}"
SPAN_KERNEL_START = "kernos.kernel.start"
SPAN_STORAGE_COMMIT = "kernos.storage.commit"
SPAN_WEBHOOK = "kernos.webhook.deliver"
SPAN_MODEL_INFER = "kernos.model.infer {kernos.model.name}"

SPAN_NAMES: tuple[str, ...] = (
    SPAN_CHAT,
    SPAN_EXECUTE_TOOL,
    SPAN_INVOKE_AGENT,
    SPAN_EMBEDDINGS,
    SPAN_SYSCALL,
    SPAN_PROCESS_STEP,
    SPAN_KERNEL_START,
    SPAN_STORAGE_COMMIT,
    SPAN_WEBHOOK,
    SPAN_MODEL_INFER,
)


def span_name(template: str, **attributes: str) -> str:
    """Fill a span-name template: ``span_name(SPAN_CHAT, **{"gen_ai.request.model": "m"})``."""
    if template not in SPAN_NAMES:
        raise KeyError(f"span {template!r} is not declared in kernos.kernel.telemetry")
    name = template
    for key, value in attributes.items():
        name = name.replace("{" + key + "}", value)
    if "{" in name:
        raise KeyError(f"span {template!r} needs attribute(s) {name!r}")
    return name


# -- Span attributes (Kernos's own; GenAI ones use the gen_ai.* names) -----------------------

ATTR_PID = "kernos.pid"
ATTR_TENANT = "kernos.tenant"
ATTR_PRINCIPAL = "kernos.principal"
ATTR_SYSCALL_KIND = "kernos.syscall.kind"
ATTR_AGENT = "kernos.agent.name"
ATTR_DECISION = "kernos.decision"
ATTR_BATCH_SIZE = "kernos.storage.batch_size"
ATTR_BACKEND = "kernos.backend"
ATTR_MODEL = "kernos.model.name"
ATTR_MODEL_VERSION = "kernos.model.version"
ATTR_MODEL_SERVER = "kernos.model.server"


# -- Metrics ---------------------------------------------------------------------------------

Kind = Literal["histogram", "counter", "updown_counter", "gauge"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricSpec:
    """A metric Kernos emits."""

    name: str
    kind: Kind
    unit: str
    description: str
    boundaries: tuple[float, ...] | None = None


# Seconds buckets from sub-millisecond syscalls to minute-long LLM calls.
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# GenAI convention's advisory token buckets.
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)

GEN_AI_OPERATION_DURATION = MetricSpec(
    name="gen_ai.client.operation.duration",
    kind="histogram",
    unit="s",
    description="GenAI operation duration (chat, embeddings, tool execution).",
    boundaries=_SECONDS,
)
GEN_AI_TOKEN_USAGE = MetricSpec(
    name="gen_ai.client.token.usage",
    kind="histogram",
    unit="{token}",
    description="Input and output tokens used, by gen_ai.token.type.",
    boundaries=_TOKENS,
)
SYSCALL_DURATION = MetricSpec(
    name="kernos.syscall.duration",
    kind="histogram",
    unit="s",
    description="Syscall latency through the whole pipeline, by kind, tool and model.",
    boundaries=_SECONDS,
)
SYSCALLS = MetricSpec(
    name="kernos.syscalls",
    kind="counter",
    unit="{syscall}",
    description="Syscalls completed, by kind and outcome (ok, denied, failed).",
)
SCHEDULER_QUEUE_DEPTH = MetricSpec(
    name="kernos.scheduler.queue_depth",
    kind="updown_counter",
    unit="{request}",
    description="LLM requests waiting for a backend, by backend.",
)
SCHEDULER_INFLIGHT = MetricSpec(
    name="kernos.scheduler.inflight",
    kind="updown_counter",
    unit="{request}",
    description="LLM requests running on a backend, by backend.",
)
SCHEDULER_IDLE_CAPACITY = MetricSpec(
    name="kernos.scheduler.idle_capacity",
    kind="updown_counter",
    unit="{request}",
    description=(
        "Free request slots per backend: its concurrency minus requests in flight (below zero "
        "just after a backend was resized down)."
    ),
)
SCHEDULER_QUEUE_WAIT = MetricSpec(
    name="kernos.scheduler.queue_wait",
    kind="histogram",
    unit="s",
    description="Time an LLM request waited for a backend slot, by backend and tenant.",
    boundaries=_SECONDS,
)
SCHEDULER_ATTEMPTS = MetricSpec(
    name="kernos.scheduler.attempts",
    kind="counter",
    unit="{attempt}",
    description=(
        "LLM request attempts by backend and outcome (ok, error, retryable, timeout, "
        "breaker_open, overloaded)."
    ),
)
BREAKER_STATE = MetricSpec(
    name="kernos.breaker.state",
    kind="gauge",
    unit="1",
    description="Circuit breaker per backend: 0 closed, 1 half-open, 2 open.",
)
INFERENCE_COST = MetricSpec(
    name="kernos.inference.cost",
    kind="counter",
    unit="{USD}",
    description="Cost of inference, by model and tenant.",
)
PROCESSES = MetricSpec(
    name="kernos.processes",
    kind="updown_counter",
    unit="{process}",
    description="Processes by state.",
)
EDGE_BUFFER_DEPTH = MetricSpec(
    name="kernos.edge.buffer_depth",
    kind="gauge",
    unit="{event}",
    description="Events waiting in an edge agent's store-and-forward buffer.",
)
STORAGE_COMMIT_DURATION = MetricSpec(
    name="kernos.storage.commit.duration",
    kind="histogram",
    unit="s",
    description="Time the single writer spends per group commit.",
    boundaries=_SECONDS,
)
STORAGE_COMMIT_BATCH = MetricSpec(
    name="kernos.storage.commit.batch_size",
    kind="histogram",
    unit="{write}",
    description="Write jobs committed together in one transaction.",
    boundaries=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)

METRICS: tuple[MetricSpec, ...] = (
    GEN_AI_OPERATION_DURATION,
    GEN_AI_TOKEN_USAGE,
    SYSCALL_DURATION,
    SYSCALLS,
    SCHEDULER_QUEUE_DEPTH,
    SCHEDULER_INFLIGHT,
    SCHEDULER_IDLE_CAPACITY,
    SCHEDULER_QUEUE_WAIT,
    SCHEDULER_ATTEMPTS,
    BREAKER_STATE,
    INFERENCE_COST,
    PROCESSES,
    EDGE_BUFFER_DEPTH,
    STORAGE_COMMIT_DURATION,
    STORAGE_COMMIT_BATCH,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class GenAIOptions:
    """How GenAI spans are recorded (``kernos.kernel.genai``): attribute names and content."""

    latest: bool = False
    """Latest experimental GenAI attribute names
    (``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``)."""
    capture_content: bool = False
    """Record prompts and completions, masked
    (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``)."""


class Telemetry:
    """The tracer and meter of one kernel, with every declared instrument created once.

    ``span_processors`` and ``metric_readers`` decide where data goes (tests pass in-memory
    ones; ``kernos.kernel.otlp`` adds OTLP). With ``enabled=False`` the tracer and meter are
    OpenTelemetry's no-op ones; with ``tracing=False`` only the tracer is (metrics stay).
    """

    def __init__(
        self,
        *,
        service_name: str = "kernos",
        enabled: bool = True,
        tracing: bool = True,
        span_processors: Sequence[SpanProcessor] = (),
        metric_readers: Sequence[MetricReader] = (),
        resource_attributes: dict[str, Any] | None = None,
        genai: GenAIOptions | None = None,
    ) -> None:
        self.genai = genai or GenAIOptions()
        """How LLM client spans record attributes and content."""
        self.content_detectors: list[Any] = []
        """Detectors (``register_redactors``) that mask captured content; the kernel sets
        them once plugins are loaded."""
        self._tracer_provider: TracerProvider | None = None
        self._meter_provider: MeterProvider | None = None
        # Always there when enabled: what /metrics renders (kernos.kernel.prometheus).
        self._scrape: InMemoryMetricReader | None = None
        if enabled:
            resource = Resource.create(
                {"service.name": service_name, **(resource_attributes or {})}
            )
            self._tracer_provider = TracerProvider(resource=resource)
            for processor in span_processors:
                self._tracer_provider.add_span_processor(processor)
            self._scrape = InMemoryMetricReader()
            self._meter_provider = MeterProvider(
                resource=resource, metric_readers=[self._scrape, *metric_readers]
            )
            self.tracer: trace.Tracer = (
                self._tracer_provider.get_tracer(INSTRUMENTATION_SCOPE)
                if tracing
                else trace.NoOpTracer()
            )
            self.meter: metrics.Meter = self._meter_provider.get_meter(INSTRUMENTATION_SCOPE)
        else:
            self.tracer = trace.NoOpTracer()
            self.meter = metrics.NoOpMeter(INSTRUMENTATION_SCOPE)
        self._instruments: dict[str, Any] = {spec.name: self._create(spec) for spec in METRICS}

    def _create(self, spec: MetricSpec) -> Any:
        if spec.kind == "histogram":
            return self.meter.create_histogram(
                spec.name,
                unit=spec.unit,
                description=spec.description,
                explicit_bucket_boundaries_advisory=list(spec.boundaries)
                if spec.boundaries
                else None,
            )
        if spec.kind == "counter":
            return self.meter.create_counter(
                spec.name, unit=spec.unit, description=spec.description
            )
        if spec.kind == "updown_counter":
            return self.meter.create_up_down_counter(
                spec.name, unit=spec.unit, description=spec.description
            )
        return self.meter.create_gauge(spec.name, unit=spec.unit, description=spec.description)

    def instrument(self, spec: MetricSpec) -> Any:
        """The instrument for a declared metric (``record``/``add``/``set`` by its kind)."""
        try:
            return self._instruments[spec.name]
        except KeyError:
            raise KeyError(
                f"metric {spec.name!r} is not declared in kernos.kernel.telemetry"
            ) from None

    def collect(self) -> MetricsData | None:
        """Every metric's current (cumulative) value, or ``None`` when telemetry is off."""
        return None if self._scrape is None else self._scrape.get_metrics_data()

    def shutdown(self) -> None:
        """Flush and stop exporters; the instruments become no-ops."""
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        if self._meter_provider is not None:
            self._meter_provider.shutdown()


def declared_names() -> Iterable[str]:
    """Every declared span template and metric name."""
    yield from SPAN_NAMES
    yield from (spec.name for spec in METRICS)
