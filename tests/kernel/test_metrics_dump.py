"""``kernos up --metrics-dump FILE`` writes the final exposition; bad ``OTEL_*`` is exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

KERNOS = str(Path(sys.executable).with_name("kernos"))


def _run(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KERNOS_", "OTEL_"))}
    base["KERNOS_HOME"] = str(home)
    with socket.socket() as probe:  # a free port: other kernels may be on the default one
        probe.bind(("127.0.0.1", 0))
        base["KERNOS_API_PORT"] = str(probe.getsockname()[1])
    base.update(env or {})
    return subprocess.run([KERNOS, *args], env=base, capture_output=True, text=True, timeout=120)


def test_up_writes_the_final_exposition_on_exit(tmp_path: Path) -> None:
    dump = tmp_path / "out" / "metrics.prom"
    result = _run(
        "up", "--headless", "--duration", "0.3", "--metrics-dump", str(dump), home=tmp_path / "h"
    )
    assert result.returncode == 0, result.stderr
    families = {f.name: f for f in text_string_to_metric_families(dump.read_text())}
    processes = {s.labels["state"]: s.value for s in families["kernos_processes"].samples}
    assert processes["running"] == 0 and set(processes) >= {"pending", "done", "failed"}
    commits = families["kernos_storage_commit_duration_seconds"]
    assert any(s.name.endswith("_count") and s.value > 0 for s in commits.samples)
    assert not dump.with_name("metrics.prom.partial").exists()


def test_an_otlp_setting_that_cannot_work_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _run(
        "up",
        "--headless",
        "--duration",
        "0",
        home=tmp_path,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "kernos: error: OTLP protocol 'grpc' is not supported: Kernos exports http/protobuf "
        "(OTEL_EXPORTER_OTLP_PROTOCOL)"
    ]
