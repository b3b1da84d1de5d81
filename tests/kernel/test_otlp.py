"""OTLP configuration read from OpenTelemetry's variables, as the SDK specification says."""

from __future__ import annotations

import pytest

from kernos.kernel.errors import ConfigError
from kernos.kernel.otlp import OtlpConfig, metric_readers, parse_headers, span_processors


def test_nothing_set_exports_nothing() -> None:
    config = OtlpConfig.from_environ({})
    assert config.traces is None and config.metrics is None
    assert span_processors(config) == [] and metric_readers(config) == []


def test_the_base_endpoint_gets_a_path_per_signal_and_specific_ones_win() -> None:
    config = OtlpConfig.from_environ(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://metrics.example/otlp",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc,x-team=city%20ops",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=def",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_SERVICE_NAME": "city",
        }
    )
    assert config.service_name == "city"
    assert config.traces is not None and config.metrics is not None
    assert config.traces.endpoint == "http://collector:4318/v1/traces"
    assert config.metrics.endpoint == "https://metrics.example/otlp"
    assert config.traces.headers == {"api-key": "def", "x-team": "city ops"}
    assert config.metrics.headers == {"api-key": "abc", "x-team": "city ops"}
    assert config.traces.timeout == 2.5
    assert len(span_processors(config)) == 1 and len(metric_readers(config)) == 1


def test_a_signal_can_be_turned_off() -> None:
    config = OtlpConfig.from_environ(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}
    )
    assert config.traces is None
    assert config.metrics is not None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4318"}, "http:// or https://"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "http/protobuf",
        ),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "not supported"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "soon"}, "whole number"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_HEADERS": "x"},
            "key=value",
        ),
    ],
)
def test_values_that_cannot_work_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OtlpConfig.from_environ(environ)


def test_headers_parse_like_the_specification() -> None:
    assert parse_headers(" a=1 , B=x%3Dy,,") == {"a": "1", "b": "x=y"}
