"""``kernos-edge run --source sim`` from a virtualenv holding only ./edge, against a real
kernel (``kernos serve``) with a key of its own; and ``kernos edge`` delegating to it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import KERNOS_BIN, served_kernel

EDGE_SOURCE = Path(__file__).resolve().parents[2] / "edge"


def run(
    *args: str | Path, timeout: float = 300, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False,
        **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


def test_kernos_edge_is_the_same_command_as_kernos_edge_run(tmp_path: Path) -> None:
    helped = run(KERNOS_BIN, "edge", "run", "--help")
    assert helped.returncode == 0, helped.stderr
    for option in ("--source", "--kernel", "--key", "--buffer", "--speed", "--hazard-model"):
        assert option in helped.stdout
    env = {**os.environ, "KERNOS_EDGE_KEY": "k", "KERNOS_HOME": str(tmp_path)}
    args = ("run", "--source", "mqtt", "--kernel", "http://127.0.0.1:9")
    mqtt = run(KERNOS_BIN, "edge", *args, env=env)
    assert mqtt.returncode == 2
    assert mqtt.stderr.strip() == "kernos: error: --source mqtt needs --mqtt URL (mqtt://host:port)"
    edge_bin = Path(sys.executable).with_name("kernos-edge")
    same = run(edge_bin, *args, env=env)
    assert same.returncode == 2
    assert same.stderr.strip().startswith("kernos-edge: error: --source mqtt needs --mqtt URL")


@pytest.mark.slow
def test_kernos_edge_from_its_own_virtualenv_forwards_to_a_real_kernel(tmp_path: Path) -> None:
    source = tmp_path / "edge"
    shutil.copytree(
        EDGE_SOURCE,
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*_cache"),
    )
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    python = venv / "bin" / "python"
    installed = run(
        python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", source,
        timeout=900,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    heavy = run(python, "-c", "import sqlalchemy")
    assert "ModuleNotFoundError" in heavy.stderr  # only ./edge and its dependencies

    home = tmp_path / "home"
    with served_kernel(home) as served:
        created = served.kernos(
            "keys", "create", "--principal", "edge-sim", "--role", "forwarder", "--json"
        )
        assert created.returncode == 0, created.stderr
        token = json.loads(created.stdout)["token"]
        url = f"http://127.0.0.1:{served.env['KERNOS_API_PORT']}"
        edge_env = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
        edge_env["KERNOS_EDGE_KEY"] = token
        edge = run(
            venv / "bin" / "kernos-edge", "run", "--source", "sim", "--kernel", url,
            "--days", "2", "--bins", "20", "--speed", "0", "--seed", "5",
            "--buffer", tmp_path / "edge" / "buffer.sqlite", "--json",
            env=edge_env,
        )  # fmt: skip
        assert edge.returncode == 0, edge.stderr
        stats = json.loads(edge.stdout)
        with sqlite3.connect(f"file:{home / 'kernos.db'}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT event_id, source FROM events WHERE topic = 'sensor.bin.fill' ORDER BY seq"
            ).fetchall()
    assert stats["raw"] > 800  # 2 days x 24 h x 20 bins, less missing readings
    assert 20 <= stats["forwarded"] <= 0.2 * stats["raw"]
    assert stats["acked"] == stats["forwarded"] and stats["left_in_buffer"] == 0
    assert stats["dead_lettered"] == 0 and stats["hazard"] == "rule"
    assert len(rows) == stats["forwarded"]
    assert all(event_id.startswith("sim5-") for event_id, _ in rows)
    assert {source for _, source in rows} == {"default/edge-sim"}  # as its own principal
    # MQTT is an extra (kernos-edge[mqtt]): without it, --source mqtt says what to install.
    no_paho = run(
        venv / "bin" / "kernos-edge", "run", "--source", "mqtt", "--mqtt", "mqtt://127.0.0.1:9",
        "--kernel", "http://127.0.0.1:9", "--key", "k", "--buffer", tmp_path / "b2.sqlite",
        env=edge_env,
    )  # fmt: skip
    assert no_paho.returncode == 2
    assert "pip install 'kernos-edge[mqtt]'" in no_paho.stderr
