"""Built-in plugin that contributes the kernel's own CLI commands (loaded like any plugin)."""

from __future__ import annotations

from collections.abc import Callable

from kernos.kernel.cli.lazy import LazyCommand
from kernos.kernel.hookspecs import hookimpl


@hookimpl
def register_commands(register: Callable[[LazyCommand], None]) -> None:
    """``up``, ``serve``, ``init``, ``plugins``, and the API clients ``run``, ``ps``, ``kill``,
    ``suspend``, ``resume``, ``approvals`` and ``top``."""
    register(LazyCommand("up", "kernos.kernel.cli.up:up", "Start a kernel and run it."))
    register(
        LazyCommand("serve", "kernos.kernel.cli.up:serve", "Start a kernel with its API only.")
    )
    register(
        LazyCommand("init", "kernos.kernel.cli.up:init", "Initialize KERNOS_HOME (idempotent).")
    )
    register(LazyCommand("plugins", "kernos.kernel.cli.plugins:plugins", "List installed plugins."))
    register(LazyCommand("run", "kernos.kernel.cli.processes:run", "Start a run of an agent."))
    register(LazyCommand("ps", "kernos.kernel.cli.processes:ps", "List processes."))
    register(LazyCommand("kill", "kernos.kernel.cli.processes:kill", "Kill a process."))
    register(LazyCommand("suspend", "kernos.kernel.cli.processes:suspend", "Suspend a process."))
    register(LazyCommand("resume", "kernos.kernel.cli.processes:resume", "Resume a process."))
    register(
        LazyCommand(
            "approvals", "kernos.kernel.cli.approvals:approvals", "List and answer approvals."
        )
    )
    register(
        LazyCommand("events", "kernos.kernel.cli.events:events", "Inspect and replay dead letters.")
    )
    register(
        LazyCommand("models", "kernos.kernel.cli.models:models", "Register and deploy models.")
    )
    register(
        LazyCommand("edge", "kernos.kernel.cli.edge:edge", "Run the edge agent (kernos-edge).")
    )
    register(
        LazyCommand(
            "retention", "kernos.kernel.cli.retention:retention", "Show and run data retention."
        )
    )
    register(LazyCommand("top", "kernos.kernel.cli.top:top", "Summarize a running kernel."))
