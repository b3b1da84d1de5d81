"""The edge distribution installs on its own and stays light."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EDGE_SOURCE = Path(__file__).resolve().parents[2] / "edge"

# What the edge must never pull in: the kernel's stack and the other Kernos packages.
FORBIDDEN = (
    "langgraph",
    "langchain_core",
    "chromadb",
    "fastapi",
    "textual",
    "sqlalchemy",
    "kernos.kernel",
    "kernos.policy",
    "kernos.memory",
    "kernos.tools",
    "kernos.agents",
    "kernos.plugins",
    "kernos.api",
    "kernos.tui",
)


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_importing_the_edge_loads_nothing_heavy() -> None:
    # Runs in this environment, where the kernel's stack is installed: an accidental import
    # would succeed here, so it has to be caught by looking at sys.modules.
    code = (
        "import sys, kernos.edge, kernos.edge.buffer, kernos.edge.cli\n"
        "forbidden = tuple(sys.argv[1:])\n"
        "prefixes = tuple(f + '.' for f in forbidden)\n"
        "loaded = [m for m in sys.modules if m in forbidden or m.startswith(prefixes)]\n"
        "print(' '.join(sorted(loaded)))\n"
    )
    result = run(sys.executable, "-c", code, *FORBIDDEN)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.slow
def test_edge_installs_alone_in_an_empty_virtualenv(tmp_path: Path) -> None:
    # Build from a copy so that setuptools' build/ and *.egg-info never land in the repo.
    source = tmp_path / "edge"
    shutil.copytree(
        EDGE_SOURCE,
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*_cache"),
    )
    venv = tmp_path / "venv"
    created = run(sys.executable, "-m", "venv", venv)
    assert created.returncode == 0, created.stderr
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"

    installed = run(
        python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", source,
        timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr

    help_run = run(bin_dir / "kernos-edge", "--help")
    assert help_run.returncode == 0, help_run.stderr
    assert "edge agent" in help_run.stdout

    imported = run(python, "-c", "import kernos.edge.buffer, kernos.edge.cli")
    assert imported.returncode == 0, imported.stderr

    heavy = run(python, "-c", "import langgraph")
    assert heavy.returncode != 0
    assert "ModuleNotFoundError" in heavy.stderr
