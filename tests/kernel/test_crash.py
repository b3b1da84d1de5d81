"""kill -9 the kernel at the worst moments; after a restart every effect happened once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernos.kernel.settings import Settings

HARNESS = Path(__file__).with_name("crash_harness.py")
pytestmark = pytest.mark.slow


def _env(settings: Settings) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("KERNOS_") or k == "KERNOS_API_PORT"
    }
    env["KERNOS_HOME"] = str(settings.home)
    if settings.database_url:
        env["KERNOS_DATABASE_URL"] = settings.database_url
    return env


def _harness(settings: Settings, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HARNESS), *args],
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _resume(settings: Settings, effects: Path) -> list[dict]:
    result = subprocess.run(
        [sys.executable, str(HARNESS), "resume", str(effects)],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _effects(effects: Path) -> tuple[dict[str, int], dict[str, int]]:
    with sqlite3.connect(effects) as conn:
        done = dict(conn.execute("SELECT logical, COUNT(*) FROM effects GROUP BY logical"))
        tries = dict(conn.execute("SELECT logical, COUNT(*) FROM attempts GROUP BY logical"))
    return done, tries


def _count_effects(effects: Path) -> int:
    try:
        with sqlite3.connect(effects, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM effects").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_kill_9_mid_flow_with_50_processes(kernos_settings: Settings, tmp_path: Path) -> None:
    effects = tmp_path / "effects.db"
    proc = _harness(kernos_settings, "spawn", str(effects), "50")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "spawned"  # all 50 accepted
        deadline = time.monotonic() + 120
        while _count_effects(effects) < 40 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    landed_before = _count_effects(effects)
    assert 0 < landed_before < 150, "the kill should land mid-flow"
    summary = _resume(kernos_settings, effects)
    workers = [p for p in summary if p["agent"] == "worker"]
    assert len(workers) == 50
    assert all(p["state"] == "done" for p in workers), [p for p in workers if p["state"] != "done"]
    done, _ = _effects(effects)
    expected = {f"job{n}:{i}" for n in range(50) for i in range(3)}
    assert set(done) == expected
    assert set(done.values()) == {1}  # every logical effect exactly once
    assert all(p["tool_calls"] == 3 for p in workers)  # charged once each
    [asker] = [p for p in summary if p["agent"] == "asker"]
    assert (asker["state"], asker["waiting_on"]) == ("waiting", "human")


def test_kill_9_inside_a_tool_after_its_effect(kernos_settings: Settings, tmp_path: Path) -> None:
    effects = tmp_path / "effects.db"
    proc = _harness(kernos_settings, "crash-in-tool", str(effects))
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    done, tries = _effects(effects)
    assert done == {"crashy:0": 1} and tries == {"crashy:0": 1}
    [worker] = _resume(kernos_settings, effects)
    assert worker["state"] == "done", worker["error"]
    done, tries = _effects(effects)
    assert done == {"crashy:0": 1, "crashy:1": 1, "crashy:2": 1}
    # The interrupted call ran again under the same key; the outside system deduplicated it.
    assert tries["crashy:0"] == 2
    with sqlite3.connect(effects) as conn:
        keys = {k for (k,) in conn.execute("SELECT key FROM attempts WHERE logical='crashy:0'")}
    assert len(keys) == 1
    assert worker["tool_calls"] == 3  # budgets charged once


def test_kill_9_right_after_a_run_is_accepted(kernos_settings: Settings, tmp_path: Path) -> None:
    effects = tmp_path / "effects.db"
    proc = _harness(kernos_settings, "crash-after-accept", str(effects))
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    [worker] = _resume(kernos_settings, effects)
    assert worker["state"] == "done", worker["error"]
    done, _ = _effects(effects)
    assert done == {"accepted:0": 1, "accepted:1": 1, "accepted:2": 1}
