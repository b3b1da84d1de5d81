"""``kernos demo waste`` as a user runs it: a short run on a small city, its JSON, its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

KERNOS = str(Path(sys.executable).with_name("kernos"))


def demo(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
    env["KERNOS_HOME"] = str(home)
    return subprocess.run(
        [KERNOS, "demo", "waste", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_a_short_run_compares_both_arms_through_a_real_kernel(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = demo("--days", "40", "--bins", "60", "--trucks", "2", "--json", home=home)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    baseline, kernos = out["baseline"], out["kernos"]
    for arm in (baseline, kernos):
        for key in ("route_km", "overflow_incidents", "pickups", "mean_fill_at_pickup"):
            assert isinstance(arm[key], int | float), key
        assert arm["route_km"] > 0 and arm["pickups"] > 0
        assert 0 < arm["mean_fill_at_pickup"] < 1.5
    assert baseline["days"] == kernos["days"] == 40 - 28  # the warm-up is not counted
    assert kernos["audit_records"] > 0 and baseline["audit_records"] is None
    assert 0 < kernos["forwarded_readings"] < kernos["raw_readings"]
    assert out["config"]["seeds"] == [1]
    assert (out["config"]["bins"], out["config"]["trucks"]) == (60, 2)
    assert "approves a hazardous pickup" in out["inspector"]
    assert "oracle" not in out
    # Its own temporary database: nothing was written to KERNOS_HOME.
    assert not home.exists() or not any(home.iterdir())


def test_the_table_and_brackets(tmp_path: Path) -> None:
    result = demo(
        "--days", "30", "--bins", "40", "--trucks", "2", "--brackets", home=tmp_path / "home"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    for arm in ("static alpha=0.1", "Kernos theta=0.1", "sensors, no forecast", "oracle"):
        assert arm in header
    assert any(line.startswith("audit records") for line in lines)
    assert "Simulated inspector: the inspector approves" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "10"], "--days must exceed the warm-up of 28 days"),
        (["--trucks", "0"], "--trucks must be at least 1"),
        (["--bins", "0"], "n_bins must be at least 1"),
        (["--theta", "1.5"], "--alpha and --theta must be in (0, 1)"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = demo(*args, home=tmp_path / "home")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
