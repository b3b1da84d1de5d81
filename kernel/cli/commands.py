"""Built-in plugin that contributes the kernel's own CLI commands (loaded like any plugin)."""

from __future__ import annotations

from collections.abc import Callable

from kernos.kernel.cli.lazy import LazyCommand
from kernos.kernel.hookspecs import hookimpl


@hookimpl
def register_commands(register: Callable[[LazyCommand], None]) -> None:
    """``up``, ``init`` and ``plugins``."""
    register(LazyCommand("up", "kernos.kernel.cli.up:up", "Start a kernel and run it."))
    register(
        LazyCommand("init", "kernos.kernel.cli.up:init", "Initialize KERNOS_HOME (idempotent).")
    )
    register(LazyCommand("plugins", "kernos.kernel.cli.plugins:plugins", "List installed plugins."))
