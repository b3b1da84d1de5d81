"""The built-in agents and their tools, as a first-party plugin."""

from __future__ import annotations

from collections.abc import Callable

from kernos.kernel.catalog import AgentSpec, ToolSpec
from kernos.kernel.hookspecs import hookimpl


@hookimpl
def register_tools(register: Callable[[ToolSpec], None]) -> None:
    """The operator agent's tools."""
    from kernos.tools.operator import OPERATOR_TOOLS

    for spec in OPERATOR_TOOLS:
        register(spec)


@hookimpl
def register_agents(register: Callable[[AgentSpec], None]) -> None:
    """The operator agent (the console's chat)."""
    from kernos.agents.operator import OPERATOR_AGENT

    register(OPERATOR_AGENT)
