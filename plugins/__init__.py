"""Kernos plugins: the ``hookimpl`` marker for plugin authors, and the first-party plugins.

A plugin is a module or object with functions marked ``@hookimpl`` whose names are Kernos
hooks (see ``docs/plugins.md``), installed through the ``kernos`` entry-point group::

    from kernos.plugins import hookimpl

    @hookimpl
    def register_tools(register):
        register(ToolSpec(name="greet", description="Greet someone", func=greet))
"""

from __future__ import annotations

from kernos.kernel.catalog import AgentBuild, AgentSpec, Budgets, ToolSpec
from kernos.kernel.cli.lazy import LazyCommand
from kernos.kernel.hookspecs import hookimpl

__all__ = ["AgentBuild", "AgentSpec", "Budgets", "LazyCommand", "ToolSpec", "hookimpl"]
