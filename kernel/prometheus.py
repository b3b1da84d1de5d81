"""Prometheus text exposition (format 0.0.4) of a kernel's OpenTelemetry metrics.

Rendered from the kernel's own in-memory metric reader rather than through
``opentelemetry-exporter-prometheus``, which registers into ``prometheus_client``'s global
registry: two kernels in one process (tests, embedding applications) would then share, and
mix, one ``/metrics``. Names follow OpenTelemetry's Prometheus compatibility rules: dots and
other characters become ``_``, the unit is appended (``s`` → ``_seconds``; ``{…}``
annotations are dropped), monotonic sums end in ``_total``, histograms expose cumulative
``_bucket{le=…}``, ``_sum`` and ``_count``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import Gauge, Histogram, MetricsData, Sum

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The exposition's media type."""

_UNITS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


@dataclass(slots=True)
class Family:
    """One metric family ready to print: name, type, help and samples."""

    name: str
    type: str
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    """(sample name, labels, value)."""


def metric_name(name: str, unit: str | None) -> str:
    """The Prometheus name of an OpenTelemetry metric (without ``_total``)."""
    base = _INVALID.sub("_", name)
    if unit and not unit.startswith("{"):
        suffix = _UNITS.get(unit, _INVALID.sub("_", unit))
        if not base.endswith(f"_{suffix}"):
            base = f"{base}_{suffix}"
    return base


def label_name(key: str) -> str:
    """A valid label name for an attribute key."""
    name = _INVALID.sub("_", key).replace(":", "_")
    return f"_{name}" if name[:1].isdigit() else name


def _labels(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    return {label_name(k): str(v) for k, v in (attributes or {}).items()}


def families(
    data: MetricsData | None, *, keep: Callable[[Mapping[str, Any]], bool] | None = None
) -> list[Family]:
    """Metric families from collected OpenTelemetry data; ``keep(attributes)`` filters points."""
    found: dict[str, Family] = {}
    if data is None:
        return []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                name = metric_name(metric.name, metric.unit)
                points: list[Any] = [
                    p for p in metric.data.data_points if keep is None or keep(p.attributes or {})
                ]
                if isinstance(metric.data, Histogram):
                    family = found.setdefault(
                        name, Family(name, "histogram", metric.description or "")
                    )
                    for point in points:
                        labels = _labels(point.attributes)
                        running = 0
                        bounds = [*point.explicit_bounds, math.inf]
                        for bound, count in zip(bounds, point.bucket_counts, strict=True):
                            running += count
                            le = "+Inf" if math.isinf(bound) else _number(float(bound))
                            family.samples.append((f"{name}_bucket", {**labels, "le": le}, running))
                        family.samples.append((f"{name}_sum", labels, float(point.sum)))
                        family.samples.append((f"{name}_count", labels, float(point.count)))
                elif isinstance(metric.data, Sum) and metric.data.is_monotonic:
                    # The text format names a counter's family with its ``_total`` suffix.
                    family = found.setdefault(
                        f"{name}_total",
                        Family(f"{name}_total", "counter", metric.description or ""),
                    )
                    for point in points:
                        family.samples.append(
                            (f"{name}_total", _labels(point.attributes), float(point.value))
                        )
                elif isinstance(metric.data, Sum | Gauge):
                    family = found.setdefault(name, Family(name, "gauge", metric.description or ""))
                    for point in points:
                        family.samples.append((name, _labels(point.attributes), float(point.value)))
    return list(found.values())


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(families_: Iterable[Family]) -> str:
    """The text exposition of ``families_`` (one ``# HELP``/``# TYPE`` per family)."""
    lines: list[str] = []
    for family in families_:
        if family.help:
            lines.append(f"# HELP {family.name} {_escape(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample, labels, value in family.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                lines.append(f"{sample}{{{inner}}} {_number(float(value))}")
            else:
                lines.append(f"{sample} {_number(float(value))}")
    return "\n".join(lines) + "\n"
