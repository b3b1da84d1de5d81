"""The ``kernos`` command line.

The root group knows commands only by name and one-line help until one is run: areas and
plugins contribute them through the ``register_commands`` hook, usually as ``LazyCommand``s,
so ``kernos --help`` imports nothing heavy. Errors print one line on stderr and exit with the
status of their ``KernosError`` class: 0 ok, 1 a check found a problem, 2 bad input or not
found, 3 denied, 4 kernel unavailable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from kernos.kernel.cli.lazy import LazyCommand
from kernos.kernel.errors import EXIT_BAD_INPUT, KernosError


def _plugin_restriction() -> list[str] | None:
    """``load_plugins`` as Settings would see it, without importing Settings (~200 ms).

    The CLI is the edge of the program, so it may read the environment and the settings
    file directly; a file it cannot parse is left for the command itself to report.
    """
    from kernos.kernel.pluginmanager import parse_plugin_list

    if "KERNOS_LOAD_PLUGINS" in os.environ:
        return parse_plugin_list(os.environ["KERNOS_LOAD_PLUGINS"])
    import tomllib
    from pathlib import Path

    path = Path(os.environ.get("KERNOS_HOME", "~/.kernos")).expanduser() / "kernos.toml"
    try:
        with path.open("rb") as handle:
            value = tomllib.load(handle).get("load_plugins")
    except (OSError, ValueError):
        return None
    if isinstance(value, str):
        return parse_plugin_list(value)
    if isinstance(value, list):
        return [str(v) for v in value]
    return None


class KernosGroup(click.Group):
    """Root group whose commands come from plugins and load on first use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._registry: dict[str, click.Command | LazyCommand] | None = None

    def registry(self) -> dict[str, click.Command | LazyCommand]:
        """Commands by name, collected once from every plugin."""
        if self._registry is None:
            from kernos.kernel.pluginmanager import PluginManager

            self._registry = PluginManager(load_plugins=_plugin_restriction()).commands()
        return self._registry

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.registry())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        item = self.registry().get(cmd_name)
        if isinstance(item, LazyCommand):
            return item.load()
        return item

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name, item in sorted(self.registry().items()):
            if isinstance(item, LazyCommand):
                rows.append((name, item.help))
            elif not item.hidden:
                rows.append((name, item.get_short_help_str(limit=formatter.width - 6)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=KernosGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Docs: docs/ in the repository. Exit status: 0 ok, 1 check found a problem, "
    "2 bad input or not found, 3 denied, 4 kernel unavailable.",
)
@click.version_option(package_name="kernos", prog_name="kernos", message="%(prog)s %(version)s")
def cli() -> None:
    """Kernos: an operating-system kernel for LLM agents.

    Runs LangGraph agents as governed processes: every LLM call, tool call and memory access
    is authorized, budgeted, audited and traced.
    """


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _save_traceback() -> str:
    import tempfile
    import traceback
    from pathlib import Path

    home = Path(os.environ.get("KERNOS_HOME", "~/.kernos")).expanduser()
    text = traceback.format_exc()
    for folder in (home / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "kernos-crash.log"
            with path.open("a") as handle:
                handle.write(text)
            return str(path)
        except OSError:
            continue
    return "nowhere (no writable log folder)"


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``kernos`` console script."""
    try:
        status = cli.main(args=argv, prog_name="kernos", standalone_mode=False)
    except click.UsageError as exc:
        hint = ""
        if exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        click.echo(f"kernos: error: {_one_line(exc.format_message())}{hint}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.ClickException as exc:
        click.echo(f"kernos: error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("kernos: aborted", err=True)
        sys.exit(130)
    except KernosError as exc:
        click.echo(f"kernos: error: {_one_line(str(exc))}", err=True)
        sys.exit(exc.exit_status)
    except Exception as exc:
        # A bug, not a user error: one line here, the traceback in a file.
        where = _save_traceback()
        click.echo(
            f"kernos: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
            f"(traceback in {where}; please report it)",
            err=True,
        )
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)
