"""Plugin loading and hook calls: failures are isolated unless the plugin is essential."""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import click
import pytest

from kernos.kernel.catalog import AgentBuild, AgentSpec, ToolSpec
from kernos.kernel.cli.lazy import LazyCommand
from kernos.kernel.errors import EssentialPluginError, InvalidInput
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.pluginmanager import BUILTIN_PLUGINS, Builtin, PluginManager


def greet(name: str) -> str:
    return f"Hello, {name}!"


class ToolPlugin:
    @hookimpl
    def register_tools(self, register):
        register(ToolSpec(name="greet", description="Greet someone.", func=greet))


class AgentPlugin:
    @hookimpl
    def register_agents(self, register):
        register(AgentSpec(name="greeter", description="Greets.", build=lambda b: None))


class CommandPlugin:
    @hookimpl
    def register_commands(self, register):
        @click.command("hi")
        def hi() -> None:
            """Say hi."""

        register(hi)
        register(LazyCommand("later", "json:dumps", "Imported on use."))


class RaisingPlugin:
    @hookimpl
    def register_tools(self, register):
        register(ToolSpec(name="half", description="Registered before the failure.", func=greet))
        raise RuntimeError("sensor service unreachable")


def manager() -> PluginManager:
    return PluginManager(entry_points=False)


def test_tools_agents_and_commands_are_collected_and_tagged() -> None:
    pm = manager()
    pm.add(ToolPlugin(), name="tools-plugin")
    pm.add(AgentPlugin(), name="agents-plugin")
    pm.add(CommandPlugin(), name="commands-plugin")
    catalog = pm.catalog()
    assert catalog.tools["greet"].plugin == "tools-plugin"
    assert catalog.tools["greet"].func("Ada") == "Hello, Ada!"
    assert catalog.agents["greeter"].plugin == "agents-plugin"
    assert catalog.agents["greeter"].ref == "greeter@1"
    commands = pm.commands()
    assert {"up", "init", "plugins", "hi", "later"} <= set(commands)
    assert isinstance(commands["later"], LazyCommand)
    info = {i.name: i for i in pm.infos()}
    assert info["tools-plugin"].tools == ["greet"]
    assert info["commands-plugin"].commands == ["hi", "later"]
    assert info["commands-plugin"].hooks == ["register_commands"]


def test_a_plugin_that_raises_is_skipped_by_name_with_what_it_registered(caplog) -> None:
    pm = manager()
    pm.add(RaisingPlugin(), name="flaky-sensors")
    pm.add(ToolPlugin(), name="tools-plugin")
    with caplog.at_level(logging.WARNING):
        catalog = pm.catalog()
    assert "half" not in catalog.tools  # staged items of a failing hook are dropped
    assert "greet" in catalog.tools
    failed = pm.failures()
    assert [f.name for f in failed] == ["flaky-sensors"]
    assert "sensor service unreachable" in (failed[0].error or "")
    assert "flaky-sensors" in caplog.text


def test_a_plugin_failing_in_one_hook_loses_its_other_contributions() -> None:
    class Mixed:
        @hookimpl
        def register_tools(self, register):
            register(ToolSpec(name="mixed_tool", description="ok", func=greet))

        @hookimpl
        def register_agents(self, register):
            raise ValueError("bad agent")

    pm = manager()
    pm.add(Mixed(), name="mixed")
    catalog = pm.catalog()
    assert "mixed_tool" not in catalog.tools
    assert pm.failures()[0].name == "mixed"


def test_duplicate_names_fail_the_second_plugin() -> None:
    pm = manager()
    pm.add(ToolPlugin(), name="first")
    pm.add(ToolPlugin(), name="second")
    catalog = pm.catalog()
    assert catalog.tools["greet"].plugin == "first"
    [failed] = pm.failures()
    assert failed.name == "second" and "already registered by 'first'" in (failed.error or "")


def test_a_misspelled_hook_fails_the_plugin() -> None:
    class Typo:
        @hookimpl
        def register_toolz(self, register):
            pass

    pm = manager()
    pm.add(Typo(), name="typo")
    [failed] = pm.failures()
    assert "unknown hook 'register_toolz'" in (failed.error or "")


def test_an_essential_plugin_that_raises_aborts() -> None:
    pm = manager()
    pm.add(RaisingPlugin(), name="kernos.policy.fake", essential=True)
    with pytest.raises(
        EssentialPluginError, match="essential plugin 'kernos.policy.fake'.*unreachable"
    ):
        pm.catalog()


def test_a_broken_essential_builtin_module_aborts_loading(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "broken_essential.py").write_text("raise ImportError('missing casbin model')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = PluginManager(
        builtins=(*BUILTIN_PLUGINS, Builtin("broken_essential", essential=True)), entry_points=False
    )
    with pytest.raises(EssentialPluginError, match="broken_essential.*missing casbin model"):
        pm.load()
    sys.modules.pop("broken_essential", None)


def test_load_plugins_restricts_only_non_essential(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "optional_plugin.py").write_text(
        textwrap.dedent(
            """
            from kernos.kernel.hookspecs import hookimpl
            from kernos.kernel.catalog import ToolSpec

            @hookimpl
            def register_tools(register):
                register(ToolSpec(name="optional_tool", description="d", func=print))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    builtins = (*BUILTIN_PLUGINS, Builtin("optional_plugin"))
    restricted = PluginManager(builtins=builtins, entry_points=False, load_plugins=[])
    status = {i.name: i.status for i in restricted.infos()}
    assert status == {
        "kernos.kernel.cli.commands": "loaded",
        "kernos.api.plugin": "loaded",  # essential: loads whatever the restriction says
        "kernos.policy.plugin": "loaded",
        "kernos.memory.plugin": "loaded",
        "kernos.plugins.llm_backends": "disabled",  # non-essential built-ins obey it
        "kernos.plugins.routing.plugin": "disabled",
        "kernos.agents.plugin": "disabled",
        "kernos.plugins.hazard.plugin": "disabled",
        "kernos.plugins.triton": "disabled",
        "kernos.plugins.sensors.plugin": "disabled",
        "kernos.plugins.city.plugin": "disabled",
        "kernos.tui.plugin": "disabled",
        "optional_plugin": "disabled",
    }
    assert "optional_tool" not in restricted.catalog().tools
    allowed = PluginManager(builtins=builtins, entry_points=False, load_plugins=["optional_plugin"])
    assert "optional_tool" in allowed.catalog().tools
    sys.modules.pop("optional_plugin", None)


def test_register_rejects_wrong_types() -> None:
    class Wrong:
        @hookimpl
        def register_tools(self, register):
            register({"name": "not a spec"})

    pm = manager()
    pm.add(Wrong(), name="wrong")
    pm.catalog()
    assert "expects ToolSpec" in (pm.failures()[0].error or "")


def test_specs_validate_names() -> None:
    with pytest.raises(InvalidInput, match="what LLM servers accept"):
        ToolSpec(name="has.dots", description="d", func=print)
    with pytest.raises(InvalidInput, match="needs a description"):
        ToolSpec(name="ok", description=" ", func=print)
    with pytest.raises(InvalidInput, match="agent name"):
        AgentSpec(name="Bad", description="d", build=lambda b: None)
    assert AgentBuild().tools == []
