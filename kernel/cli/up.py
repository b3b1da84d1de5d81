"""``kernos up`` and ``kernos init``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import click

from kernos.kernel.cli.output import configure_logging, print_json
from kernos.kernel.identity import DEFAULT_TENANT, LOCAL_ADMIN
from kernos.kernel.kernel import Kernel, KernelSummary
from kernos.kernel.settings import load_settings


async def _serve(kernel: Kernel, duration: float | None) -> KernelSummary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    async def announce() -> None:
        await kernel.ready.wait()
        for failed in kernel.plugins.failures():
            click.echo(f"kernos: warning: plugin {failed.name!r} skipped: {failed.error}", err=True)
        until = f"for {duration:g} s" if duration is not None else "until Ctrl-C"
        click.echo(
            f"Kernos {kernel.version} running on {kernel.database_shown} {until} "
            f"(pid {os.getpid()})",
            err=True,
        )

    announcer = asyncio.create_task(announce())
    try:
        return await kernel.run(duration=duration, stop=stop)
    finally:
        announcer.cancel()


@click.command()
@click.option(
    "--headless",
    is_flag=True,
    help="Run without the terminal console (implied when not on a terminal).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    metavar="S",
    help="Stop cleanly after S seconds (for scripts and CI); default: until Ctrl-C or SIGTERM.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the closing summary as JSON.")
def up(headless: bool, duration: float | None, as_json: bool) -> None:
    """Start a kernel on KERNOS_HOME and run it.

    An empty KERNOS_HOME is initialized first (database, default tenant, local admin).
    A second kernel on the same database is refused (exit 4).
    """
    settings = load_settings()
    configure_logging(settings.log_level, log_dir=settings.home / "logs")
    kernel = Kernel(settings)
    summary = asyncio.run(_serve(kernel, duration))
    if as_json:
        print_json(summary.as_dict())
        return
    failed = ", ".join(f"{k} ({v})" for k, v in summary.plugins_failed.items()) or "none"
    click.echo(
        f"Kernos {summary.version} stopped after {summary.uptime_seconds:.1f} s\n"
        f"  database  {summary.database} (schema {summary.schema})\n"
        f"  plugins   {len(summary.plugins_loaded)} loaded; failed: {failed}\n"
        f"  tools     {', '.join(summary.tools) or 'none'}\n"
        f"  agents    {', '.join(summary.agents) or 'none'}\n"
        f"  tenants   {', '.join(summary.tenants)}\n"
        f"  storage   {summary.writes} writes in {summary.commits} commits"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def init(as_json: bool) -> None:
    """Initialize KERNOS_HOME: database schema, default tenant and local admin. Idempotent.

    Refused (exit 4) while a kernel runs on the same database.
    """
    settings = load_settings()
    configure_logging(settings.log_level, log_dir=settings.home / "logs")

    async def _init() -> dict[str, str]:
        kernel = Kernel(settings)
        async with kernel:
            return {
                "home": str(settings.home),
                "database": kernel.database_shown,
                "schema": kernel.schema_revision or "",
                "tenant": DEFAULT_TENANT,
                "admin": LOCAL_ADMIN,
            }

    result = asyncio.run(_init())
    if as_json:
        print_json(result)
    else:
        click.echo(
            f"Kernos home {result['home']} is ready: database {result['database']} "
            f"(schema {result['schema']}), tenant {result['tenant']!r}, admin {result['admin']!r}."
        )
