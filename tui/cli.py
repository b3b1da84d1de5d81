"""``kernos console [--url URL] [--token TOKEN]``: open the operator console."""

from __future__ import annotations

import click


@click.command()
@click.option("--url", metavar="URL", help="The kernel's API (default: from the settings).")
@click.option(
    "--token",
    metavar="TOKEN",
    envvar="KERNOS_TOKEN",
    help="API key or admin token (default: KERNOS_HOME/admin.token).",
)
@click.option(
    "--refresh",
    type=click.FloatRange(min=0.2, max=3600),
    default=2.0,
    show_default=True,
    metavar="S",
    help="Seconds between refreshes.",
)
def console(url: str | None, token: str | None, refresh: float) -> None:
    """Open the operator console: processes, approvals, chat, audit, events and metrics of a
    running kernel (local or remote, over its HTTP API).

    It keeps running while the kernel is away, says so, and reconnects when it is back.

    \b
    Example:
      kernos console --url https://kernos.example:8787 --token $KEY
    """
    from kernos.tui.app import create_app

    create_app(url=url, token=token, refresh_seconds=refresh).run()
