"""The ``city`` plugin's hooks: the scenario's tools and dispatcher agent, ``kernos demo``, and
unbinding a kernel's scenario when it stops. The daily trigger is not a ``register_triggers``
one: :func:`~kernos.plugins.city.scenario.install` adds it with the scenario, so a kernel
without a city has no dispatcher waiting for ``city.day``. Imports stay light here:
``kernos --help`` loads every built-in plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kernos.kernel.cli.lazy import LazyCommand
from kernos.kernel.hookspecs import hookimpl

if TYPE_CHECKING:
    from kernos.kernel.catalog import AgentSpec, ToolSpec
    from kernos.kernel.kernel import Kernel


@hookimpl
def register_tools(register: Callable[[ToolSpec], None]) -> None:
    """``city_board``, ``city_plan`` and ``dispatch_trucks``."""
    from kernos.plugins.city.tools import CITY_TOOLS

    for spec in CITY_TOOLS:
        register(spec)


@hookimpl
def register_agents(register: Callable[[AgentSpec], None]) -> None:
    """The dispatcher agent (``waste-dispatcher``)."""
    from kernos.plugins.city.agent import DISPATCHER_AGENT

    register(DISPATCHER_AGENT)


@hookimpl
def register_commands(register: Callable[[LazyCommand], None]) -> None:
    """``kernos demo`` (``kernos demo waste``)."""
    register(LazyCommand("demo", "kernos.plugins.city.cli:demo", "Run the simulated city demo."))


@hookimpl
def on_shutdown(kernel: Kernel) -> None:
    """Unbind the kernel's scenarios."""
    from kernos.plugins.city.scenario import uninstall

    uninstall(kernel)
