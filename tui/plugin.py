"""Built-in plugin that contributes ``kernos console`` (Textual is imported only when the
command runs)."""

from __future__ import annotations

from collections.abc import Callable

from kernos.kernel.cli.lazy import LazyCommand
from kernos.kernel.hookspecs import hookimpl


@hookimpl
def register_commands(register: Callable[[LazyCommand], None]) -> None:
    """``console``."""
    register(LazyCommand("console", "kernos.tui.cli:console", "Open the operator console."))
