"""The ``kernos-edge`` command line.

Every error is one line on stderr, ``kernos-edge: error: ...``; bad input and a missing buffer
file exit with status 2, other failures with status 1.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click

from kernos.edge import __version__
from kernos.edge.buffer import BufferFileError, ForwardBuffer

__all__ = ["CliError", "CliFailure", "main"]

PROG_NAME = "kernos-edge"


class CliError(click.ClickException):
    """Bad input (or a missing buffer file): one line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        """Write the message as a single ``kernos-edge: error:`` line."""
        # Scripts grep and log this; a message spread over lines would be cut apart.
        message = " ".join(self.format_message().split("\n"))
        click.echo(f"{PROG_NAME}: error: {message}", file=file, err=file is None)


class CliFailure(CliError):
    """The command was fine but could not be carried out: exit status 1."""

    exit_code = 1


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Re-raise click's own errors (unknown option, missing value...) in the one-line form."""
    try:
        yield
    except CliError:
        raise
    except click.UsageError as exc:
        raise CliError(exc.format_message()) from exc
    except click.ClickException as exc:
        raise CliFailure(exc.format_message()) from exc


class _EdgeGroup(click.Group):
    """The top-level group: every error below it passes through here on its way out."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the top-level options, with one-line errors."""
        with _one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand (its parsing included), with one-line errors."""
        with _one_line_errors():
            return super().invoke(ctx)


def _help_if_no_subcommand(ctx: click.Context) -> None:
    # Groups here are invoke_without_command so that a bare call prints help and exits 0 on
    # every click version, instead of surfacing as a usage error.
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@click.group(
    cls=_EdgeGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name=PROG_NAME, message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Kernos edge agent: the part of Kernos that runs next to the sensors.

    The edge agent reads sensor events, pre-filters them on the device and forwards what is
    left to a Kernos kernel. Every event it accepts is first written to a local
    store-and-forward buffer (a SQLite file) and stays there until the kernel acknowledges
    it, so an unreachable kernel, a crash or a reboot loses nothing. When a bounded buffer
    is full the agent refuses new events loudly rather than dropping old ones.

    It needs neither the kernel nor its stack (click, numpy and onnxruntime; paho-mqtt for
    MQTT, the mqtt extra), so it fits small devices.
    """
    _help_if_no_subcommand(ctx)


@main.group(name="buffer", invoke_without_command=True)
@click.pass_context
def buffer_group(ctx: click.Context) -> None:
    """Inspect or empty a store-and-forward buffer file."""
    _help_if_no_subcommand(ctx)


_buffer_option = click.option(
    "--buffer",
    "buffer_path",
    required=True,
    metavar="PATH",
    type=click.Path(path_type=Path),
    help="The buffer file (SQLite) the edge agent writes to.",
)


@contextmanager
def _open_buffer(path: Path) -> Iterator[ForwardBuffer]:
    """Open an existing buffer, turning every failure into a one-line CLI error."""
    try:
        buffer = ForwardBuffer(path, create=False)
    except FileNotFoundError:
        raise CliError(f"no buffer file at {path}") from None
    except BufferFileError as exc:
        raise CliError(str(exc)) from None
    except (sqlite3.Error, OSError) as exc:
        raise CliFailure(f"cannot open buffer {path}: {exc}") from None
    with buffer:
        try:
            yield buffer
        except sqlite3.Error as exc:
            raise CliFailure(f"buffer {path}: {exc}") from None


@buffer_group.command()
@_buffer_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def stats(buffer_path: Path, as_json: bool) -> None:
    """Show a buffer's event count, size on disk and sequence range."""
    with _open_buffer(buffer_path) as buffer:
        snapshot = buffer.stats()
        oldest_age = buffer.oldest_age()
    if as_json:
        document = {
            "buffer": str(buffer_path),
            "count": snapshot.count,
            "bytes_on_disk": snapshot.bytes_on_disk,
            "oldest_seq": snapshot.oldest_seq,
            "newest_seq": snapshot.newest_seq,
            "oldest_age_s": None if oldest_age is None else round(oldest_age, 3),
        }
        click.echo(json.dumps(document, sort_keys=True))
        return
    click.echo(f"buffer:        {buffer_path}")
    click.echo(f"events:        {snapshot.count}")
    click.echo(f"bytes on disk: {snapshot.bytes_on_disk}")
    click.echo(f"oldest seq:    {_or_dash(snapshot.oldest_seq)}")
    click.echo(f"newest seq:    {_or_dash(snapshot.newest_seq)}")
    click.echo(f"oldest age:    {'-' if oldest_age is None else f'{oldest_age:.1f} s'}")


@buffer_group.command()
@_buffer_option
@click.option("--yes", is_flag=True, help="Confirm: the discarded events are never forwarded.")
def drain(buffer_path: Path, yes: bool) -> None:
    """Discard every buffered event and print how many were discarded."""
    if not yes:
        raise CliError("drain discards buffered events for good; pass --yes to confirm")
    with _open_buffer(buffer_path) as buffer:
        newest = buffer.stats().newest_seq
        # Acking up to the newest seq seen, not "delete all": an event appended meanwhile by
        # a running agent has a higher seq and survives.
        discarded = 0 if newest is None else buffer.ack(newest)
    click.echo(f"discarded {discarded} buffered event(s) from {buffer_path}")


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _sim_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--days --speed --seed --bins``: the simulated city a command runs or publishes."""
    for option in reversed(
        [
            click.option("--days", default=1, show_default=True, type=click.IntRange(min=1)),
            click.option(
                "--speed",
                default=0.0,
                show_default=True,
                type=click.FloatRange(min=0),
                help="Simulated hours per real second (0: as fast as possible).",
            ),
            click.option(
                "--seed", default=1, show_default=True, type=int, help="The simulated city's seed."
            ),
            click.option(
                "--bins",
                type=click.IntRange(min=1),
                help="Bins in the simulated city (default: 300).",
            ),
        ]
    ):
        command = option(command)
    return command


@main.command()
@click.option(
    "--source",
    type=click.Choice(["sim", "mqtt"]),
    default="sim",
    show_default=True,
    help="Where readings come from: the simulated city, or an MQTT broker (--mqtt).",
)
@click.option(
    "--kernel",
    "kernel_url",
    required=True,
    envvar="KERNOS_EDGE_KERNEL",
    metavar="URL",
    help="The kernel's API, e.g. http://127.0.0.1:8787 (env KERNOS_EDGE_KERNEL).",
)
@click.option(
    "--key",
    required=True,
    envvar="KERNOS_EDGE_KEY",
    metavar="KEY",
    help="This edge agent's own API key, role forwarder (env KERNOS_EDGE_KEY).",
)
@click.option(
    "--buffer",
    "buffer_path",
    default=Path("~/.kernos-edge/buffer.sqlite"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="The store-and-forward buffer file; dead letters go to PATH.dead.",
)
@_sim_options
@click.option(
    "--hazard-model",
    type=click.Path(path_type=Path, dir_okay=False),
    help="An ONNX hazard classifier (input [N,3]: level, temp_c, voc_ppm); default: a rule.",
)
@click.option(
    "--name",
    "node",
    help="This edge agent's name, the prefix of its event ids (default: sim<seed>).",
)
@click.option(
    "--drain-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait at the end for the buffer to drain.",
)
@click.option(
    "--mqtt",
    "mqtt_url",
    envvar="KERNOS_EDGE_MQTT",
    metavar="URL",
    help="--source mqtt: the broker, mqtt://[user:pass@]host[:port] (env KERNOS_EDGE_MQTT).",
)
@click.option(
    "--mqtt-topic",
    default="bins/+/reading",
    show_default=True,
    help="--source mqtt: the topic filter to subscribe; a payload without 'bin' takes it "
    "from the topic's first numeric level.",
)
@click.option(
    "--mqtt-qos",
    default=1,
    show_default=True,
    type=click.IntRange(0, 1),
    help="--source mqtt: subscription QoS (1: what arrives while the agent is away is kept).",
)
@click.option(
    "--idle-exit",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="--source mqtt: stop after this many seconds without a message (0: run until "
    "SIGINT/SIGTERM).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the stats as one JSON object.")
def run(
    source: str,
    kernel_url: str,
    key: str,
    buffer_path: Path,
    days: int,
    speed: float,
    seed: int,
    bins: int | None,
    hazard_model: Path | None,
    node: str | None,
    drain_timeout: float,
    mqtt_url: str | None,
    mqtt_topic: str,
    mqtt_qos: int,
    idle_exit: float,
    as_json: bool,
) -> None:
    """Read a source, filter on the device, buffer and forward to a kernel.

    Prints one stats line at the end: raw readings, dropped ones by reason, malformed
    messages by kind (forwarded for the kernel to dead-letter), forwarded, acked and refused
    by the kernel, dead-lettered here, still buffered, retries. SIGINT or SIGTERM stops the
    source; what was read is still forwarded (up to --drain-timeout).
    """
    from kernos.edge.errors import EdgeError
    from kernos.edge.filter import EdgeFilter, FilterParams
    from kernos.edge.forwarder import ForwardRefused
    from kernos.edge.hazard import load_hazard_classifier
    from kernos.edge.runner import run_edge
    from kernos.edge.sim.params import CityParams
    from kernos.edge.sources import open_source

    try:
        params = CityParams() if bins is None else CityParams(n_bins=bins)
        node = node or (f"sim{seed}" if source == "sim" else "mqtt")
        readings = open_source(
            source,
            params=params,
            seed=seed,
            days=days,
            speed=speed,
            mqtt_url=mqtt_url,
            mqtt_topic=mqtt_topic,
            mqtt_qos=mqtt_qos,
            node=node,
            idle_exit_s=idle_exit,
        )
        # Real sensors' bin ids are not the simulated city's: bound them only when asked.
        filter_params = (
            FilterParams.for_city(params)
            if source == "sim"
            else FilterParams.for_city(params, n_bins=bins)
        )
        edge_filter = EdgeFilter(filter_params, hazard=load_hazard_classifier(hazard_model))
        with _stopping_on_signals(readings.stop):
            report = run_edge(
                readings,
                edge_filter,
                kernel_url=kernel_url,
                key=key,
                buffer_path=buffer_path.expanduser(),
                node=node,
                drain_timeout_s=drain_timeout,
            )
    except EdgeError as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:  # a bad URL, say
        raise CliError(str(exc)) from None
    except ForwardRefused as exc:
        raise CliFailure(str(exc)) from None
    except (BufferFileError, sqlite3.Error, OSError) as exc:
        raise CliFailure(f"buffer {buffer_path}: {exc}") from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), sort_keys=True))
    else:
        click.echo(f"{PROG_NAME}: {report.line()}")


@contextmanager
def _stopping_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` on SIGINT and SIGTERM meanwhile (main thread only), then restore."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@main.command(name="publish-sim")
@click.option(
    "--mqtt",
    "mqtt_url",
    required=True,
    envvar="KERNOS_EDGE_MQTT",
    metavar="URL",
    help="The broker, mqtt://[user:pass@]host[:port] (env KERNOS_EDGE_MQTT).",
)
@_sim_options
@click.option(
    "--topic-prefix",
    default="bins",
    show_default=True,
    help="Readings go to PREFIX/{bin}/reading.",
)
@click.option("--qos", default=1, show_default=True, type=click.IntRange(0, 1))
def publish_sim(
    mqtt_url: str,
    days: int,
    speed: float,
    seed: int,
    bins: int | None,
    topic_prefix: str,
    qos: int,
) -> None:
    """Publish the simulated city's sensor readings to an MQTT broker: one JSON reading per
    message on PREFIX/{bin}/reading, as real sensors would (for demos and tests)."""
    from kernos.edge.errors import EdgeError
    from kernos.edge.mqtt import parse_broker_url, publish, reading_topic
    from kernos.edge.sim.params import CityParams
    from kernos.edge.sources import SimSource

    try:
        url = parse_broker_url(mqtt_url)
        params = CityParams() if bins is None else CityParams(n_bins=bins)
        sim = SimSource(params, seed=seed, days=days, speed=speed)
        messages = (
            (reading_topic(b, prefix=topic_prefix), reading)
            for chunk in sim
            for b, reading in _chunk_readings(chunk)
        )
        with _stopping_on_signals(sim.stop):
            count = publish(url, messages, qos=qos, client_id="")
    except EdgeError as exc:
        raise CliError(str(exc)) from None
    except ConnectionError as exc:
        raise CliFailure(str(exc)) from None
    click.echo(f"{PROG_NAME}: published {count} reading(s) to {url}")


def _chunk_readings(chunk: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(bin, reading)`` of one interval's readings, rounded as the sensors report them."""
    for b, ts, level, temp, voc in zip(
        chunk.bins, chunk.ts, chunk.level, chunk.temp_c, chunk.voc_ppm, strict=True
    ):
        yield (
            b,
            {
                "bin": b,
                "level": round(level, 4),
                "temp_c": round(temp, 2),
                "voc_ppm": round(voc, 3),
                "ts": ts,
            },
        )
