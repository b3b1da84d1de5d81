"""The ``routing`` plugin's hooks. Imports stay light here (``kernos --help`` loads every
built-in plugin): the tools, their pydantic models and OR-Tools live in :mod:`.tools`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kernos.kernel.hookspecs import hookimpl

if TYPE_CHECKING:
    from kernos.kernel.catalog import ToolSpec


@hookimpl
def register_tools(register: Callable[[ToolSpec], None]) -> None:
    """Contribute ``routing_forecast`` and ``routing_plan``."""
    from kernos.plugins.routing.tools import tool_specs

    for spec in tool_specs():
        register(spec)
