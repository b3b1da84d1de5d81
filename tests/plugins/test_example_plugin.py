"""The example third-party plugin, pip-installed from examples/, seen and used by Kernos."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.tools import StructuredTool

from kernos.kernel.catalog import AgentBuild
from kernos.kernel.pluginmanager import PluginManager

ROOT = Path(__file__).resolve().parents[2]
KERNOS = str(Path(sys.executable).with_name("kernos"))


@pytest.fixture(scope="module")
def installed(hello_plugin_site: Path) -> Path:
    """The example plugin, pip-installed into a private target directory (conftest)."""
    return hello_plugin_site


def _env(target: Path, home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("KERNOS_") or k == "KERNOS_API_PORT"
    }
    env["PYTHONPATH"] = str(target)
    env["KERNOS_HOME"] = str(home)
    return env


def test_plugins_list_shows_its_tool_agent_and_command(installed: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [KERNOS, "plugins", "list", "--json"],
        env=_env(installed, tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    hello = plugins["kernos-hello"]
    assert hello["status"] == "loaded" and hello["source"] == "entrypoint"
    assert hello["version"] == "0.1.0"
    assert hello["tools"] == ["hello_greet"]
    assert hello["agents"] == ["hello"]
    assert hello["commands"] == ["hello"]
    assert set(hello["hooks"]) == {"register_tools", "register_agents", "register_commands"}
    assert plugins["kernos.kernel.cli.commands"]["essential"] is True


def test_its_command_runs_and_can_be_disabled(installed: Path, tmp_path: Path) -> None:
    env = _env(installed, tmp_path)
    result = subprocess.run([KERNOS, "hello", "Ada"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello, Ada!"
    env["KERNOS_LOAD_PLUGINS"] = ""
    result = subprocess.run([KERNOS, "hello", "Ada"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("kernos: error: No such command 'hello'")
    listing = subprocess.run(
        [KERNOS, "plugins", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )
    status = {p["name"]: p["status"] for p in json.loads(listing.stdout)}
    assert status["kernos-hello"] == "disabled"


def test_its_agent_graph_runs_with_its_tool(installed: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(installed))
    # A fresh manager finds the plugin through its entry point on the new path.
    import importlib

    importlib.invalidate_caches()
    catalog = PluginManager().catalog()
    spec = catalog.tools["hello_greet"]
    agent = catalog.agents["hello"]
    assert spec.plugin == agent.plugin == "kernos-hello"
    assert spec.json_schema()["required"] == ["name"]
    tool = StructuredTool.from_function(
        spec.func, name=spec.name, description=spec.description, args_schema=spec.args_schema
    )
    graph = agent.build(AgentBuild(tools=[tool]))
    result = asyncio.run(graph.ainvoke({"name": "Grace"}))
    assert result == {"name": "Grace", "greeting": "Hello, Grace!"}
    sys.modules.pop("kernos_hello", None)


def test_load_plugins_in_kernos_toml_also_hides_its_command(
    installed: Path, tmp_path: Path
) -> None:
    (tmp_path / "kernos.toml").write_text("load_plugins = []\n")
    result = subprocess.run(
        [KERNOS, "hello", "Ada"], env=_env(installed, tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "No such command 'hello'" in result.stderr
