"""``kernos up``, ``kernos serve`` and ``kernos init``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kernos.kernel.cli.output import configure_logging, print_json
from kernos.kernel.errors import EssentialPluginError, KernosError
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import DEFAULT_TENANT, LOCAL_ADMIN
from kernos.kernel.kernel import Kernel, KernelSummary
from kernos.kernel.settings import Settings, load_settings
from kernos.kernel.tokens import admin_token_path


async def _serve(
    kernel: Kernel,
    duration: float | None,
    *,
    stop: asyncio.Event | None = None,
    quiet: bool = False,
) -> KernelSummary:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Off the main thread (the console owns it) there are no signal handlers to add.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)

    async def announce() -> None:
        await kernel.ready.wait()
        # A long-running server: move everything loaded at start-up (modules, the policy,
        # graphs) out of the collector's sight, so a full collection scans only what requests
        # allocate — measured: p99 of a process read 137 ms -> 35 ms (docs/benchmarks.md).
        gc.freeze()
        if quiet:  # a console owns the terminal: _run_with_console prints this afterwards
            return
        for failed in kernel.plugins.failures():
            click.echo(f"kernos: warning: plugin {failed.name!r} skipped: {failed.error}", err=True)
        for notice in kernel.notices:
            click.echo(notice, err=True)
        until = f"for {duration:g} s" if duration is not None else "until Ctrl-C"
        click.echo(
            f"Kernos {kernel.version} running on {kernel.database_shown} {until} "
            f"(pid {os.getpid()})",
            err=True,
        )
        if kernel.serve_api:
            from kernos.kernel.client import base_url_for

            click.echo(
                f"API on {base_url_for(kernel.settings)} "
                f"(admin token in {admin_token_path(kernel.settings.home)})",
                err=True,
            )

    announcer = asyncio.create_task(announce())
    try:
        return await kernel.run(duration=duration, stop=stop)
    finally:
        announcer.cancel()


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # FloatRange lets NaN through (every comparison with it is false).
    if value is not None and value != value:
        raise click.BadParameter("must be a number of seconds", ctx=ctx, param=param)
    return value


class _MetricsDump:
    """Writes the final Prometheus exposition when the kernel stops (``--metrics-dump``):
    at ``on_shutdown`` the processes have settled and the database is still open."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @hookimpl
    async def on_shutdown(self, kernel: Kernel) -> None:
        """Write the file."""
        from kernos.kernel.exposition import dump

        await dump(kernel, self.path)


def _build_kernel(settings: Settings, *, metrics_dump: Path | None) -> Kernel:
    """A kernel with the OTLP export ``OTEL_*`` asks for (the CLI is the edge that reads the
    environment) and, with ``metrics_dump``, the final exposition written there."""
    from kernos.kernel.otlp import telemetry_from_environ

    telemetry = telemetry_from_environ(os.environ, tracing=settings.tracing)
    kernel = Kernel(settings, serve_api=True, telemetry=telemetry)
    if metrics_dump is not None:
        kernel.plugins.add(_MetricsDump(metrics_dump), name="kernos-metrics-dump")
    return kernel


def _run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``up`` and ``serve`` share."""
    command = click.option(
        "--metrics-dump",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        metavar="FILE",
        help="When the kernel stops, write its final Prometheus exposition (every tenant) to FILE.",
    )(command)
    command = click.option(
        "--json", "as_json", is_flag=True, help="Print the closing summary as JSON."
    )(command)
    command = click.option(
        "--duration",
        type=click.FloatRange(min=0, max=1e9),
        callback=_finite,
        metavar="S",
        help="Stop cleanly after S seconds (for scripts and CI); default: until Ctrl-C or SIGTERM.",
    )(command)
    return click.option(
        "--headless",
        is_flag=True,
        help="Run without the terminal console (implied when not on a terminal).",
    )(command)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (Linux, macOS): the API serves about 40 %
    more requests per second on it (docs/benchmarks.md, "API load"); else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _run_kernel(*, duration: float | None, as_json: bool, metrics_dump: Path | None) -> None:
    settings = load_settings()
    configure_logging(settings.log_level, log_dir=settings.home / "logs")
    kernel = _build_kernel(settings, metrics_dump=metrics_dump)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            summary = runner.run(_serve(kernel, duration))
    except EssentialPluginError as exc:
        # An essential plugin that failed with a KernosError (the API's "address already in
        # use") already said what happened and what to do; the wrapper would only bury it.
        if isinstance(exc.__cause__, KernosError):
            raise exc.__cause__ from None
        raise
    finally:
        kernel.telemetry.shutdown()  # flushes the OTLP exporters
    _report(summary, as_json=as_json)


def _report(summary: KernelSummary, *, as_json: bool) -> None:
    """Print what ``kernos up``/``serve`` did, once stopped."""
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


def _console(ctx: click.Context) -> click.Command | None:
    """The ``console`` command, when a plugin (the built-in ``kernos.tui``) provides it."""
    root = ctx.find_root()
    group = root.command
    return group.get_command(root, "console") if isinstance(group, click.Group) else None


def _run_with_console(
    ctx: click.Context,
    console: click.Command,
    *,
    duration: float | None,
    as_json: bool,
    metrics_dump: Path | None,
) -> None:
    """Run the kernel on a thread of its own and the console in front, on this (main) thread;
    closing the console stops the kernel."""
    settings = load_settings()
    configure_logging(settings.log_level, log_dir=settings.home / "logs", to_stderr=False)
    kernel = _build_kernel(settings, metrics_dump=metrics_dump)
    started = threading.Event()
    held: dict[str, Any] = {}

    async def main() -> KernelSummary:
        held["loop"], held["stop"] = asyncio.get_running_loop(), asyncio.Event()
        serving = asyncio.create_task(_serve(kernel, duration, stop=held["stop"], quiet=True))
        ready = asyncio.create_task(kernel.ready.wait())
        await asyncio.wait([serving, ready], return_when=asyncio.FIRST_COMPLETED)
        started.set()
        return await serving

    def run() -> None:
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                held["summary"] = runner.run(main())
        except BaseException as exc:  # reported on the main thread
            held["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="kernos-kernel", daemon=True)
    thread.start()
    started.wait()
    if "error" not in held and kernel.running:
        try:
            ctx.invoke(console)
        finally:
            held["loop"].call_soon_threadsafe(held["stop"].set)
    thread.join()
    kernel.telemetry.shutdown()
    for failed in kernel.plugins.failures():
        click.echo(f"kernos: warning: plugin {failed.name!r} skipped: {failed.error}", err=True)
    for notice in kernel.notices:  # the first start's admin key is shown only here
        click.echo(notice, err=True)
    error = held.get("error")
    if isinstance(error, EssentialPluginError) and isinstance(error.__cause__, KernosError):
        raise error.__cause__ from None
    if error is not None:
        raise error
    _report(held["summary"], as_json=as_json)


@click.command()
@_run_options
@click.pass_context
def up(
    ctx: click.Context,
    headless: bool,
    duration: float | None,
    as_json: bool,
    metrics_dump: Path | None,
) -> None:
    """Start a kernel on KERNOS_HOME with its HTTP API, and run it.

    An empty KERNOS_HOME is initialized first (database, default tenant, local admin and its
    token). The API listens on KERNOS_API_HOST:KERNOS_API_PORT (default 127.0.0.1:8787).
    A second kernel on the same database is refused (exit 4).

    \b
    On a terminal it opens the operator console (`kernos console`) in front of the kernel;
    closing the console stops the kernel. `--headless` (implied off a terminal) runs without.

    \b
    Spans and metrics go over OTLP/HTTP where OTEL_EXPORTER_OTLP_ENDPOINT says
    (docs/observability.md).

    \b
    Examples:
      kernos up --headless --duration 60
      kernos up --headless --duration 60 --metrics-dump metrics.prom
    """
    console = None
    if not headless and sys.stdin.isatty() and sys.stdout.isatty():
        console = _console(ctx)
    if console is not None:
        _run_with_console(
            ctx, console, duration=duration, as_json=as_json, metrics_dump=metrics_dump
        )
        return
    _run_kernel(duration=duration, as_json=as_json, metrics_dump=metrics_dump)


@click.command()
@_run_options
def serve(headless: bool, duration: float | None, as_json: bool, metrics_dump: Path | None) -> None:
    """Start a kernel with its HTTP API only (no default scenario, no console).

    For servers and scripts: the same as `kernos up` minus what `up` adds for a person at a
    terminal. Commands such as `kernos run` and `kernos ps` talk to it over HTTP.

    \b
    Example:
      KERNOS_API_PORT=9000 kernos serve --headless
    """
    _run_kernel(duration=duration, as_json=as_json, metrics_dump=metrics_dump)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def init(as_json: bool) -> None:
    """Initialize KERNOS_HOME: database schema, default tenant, local admin and its API token
    (KERNOS_HOME/admin.token, mode 0600). Idempotent.

    Refused (exit 4) while a kernel runs on the same database.
    """
    settings = load_settings()
    configure_logging(settings.log_level, log_dir=settings.home / "logs")

    async def _init() -> dict[str, Any]:
        kernel = Kernel(settings)
        async with kernel:
            return {
                "home": str(settings.home),
                "database": kernel.database_shown,
                "schema": kernel.schema_revision or "",
                "tenant": DEFAULT_TENANT,
                "admin": LOCAL_ADMIN,
                "notices": list(kernel.notices),
            }

    result = asyncio.run(_init())
    if as_json:
        print_json(result)
    else:
        click.echo(
            f"Kernos home {result['home']} is ready: database {result['database']} "
            f"(schema {result['schema']}), tenant {result['tenant']!r}, admin {result['admin']!r}."
        )
        for notice in result["notices"]:
            click.echo(notice)
