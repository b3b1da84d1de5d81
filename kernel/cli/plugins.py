"""``kernos plugins list``."""

from __future__ import annotations

import click

from kernos.kernel.cli.output import print_json, print_table
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings


@click.group()
def plugins() -> None:
    """Inspect installed plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (name, version, hooks, ...).")
def list_plugins(as_json: bool) -> None:
    """List every plugin: built-in, installed through entry points, disabled or failed.

    KERNOS_LOAD_PLUGINS (a comma list) restricts which non-essential plugins load.
    """
    settings = load_settings()
    manager = PluginManager(load_plugins=settings.load_plugins)
    manager.commands()
    manager.catalog()
    infos = manager.infos()
    if as_json:
        print_json([info.as_dict() for info in infos])
        return
    rows = [
        (
            i.name,
            i.version,
            i.source + (" (essential)" if i.essential else ""),
            i.status if i.error is None else f"failed: {i.error}",
            ", ".join(i.hooks),
            ", ".join(i.tools + i.agents) or "-",
        )
        for i in infos
    ]
    print_table(rows, ("NAME", "VERSION", "SOURCE", "STATUS", "HOOKS", "TOOLS/AGENTS"))
