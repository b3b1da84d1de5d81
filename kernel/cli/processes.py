"""``kernos run``, ``ps``, ``kill``, ``suspend`` and ``resume``: clients of a running kernel."""

from __future__ import annotations

from typing import Any

import click

from kernos.kernel.cli.output import print_json, print_table
from kernos.kernel.cli.remote import age, connect, parse_json_option

# Mirrors kernos.kernel.processes.ProcessState (a test keeps them equal); importing it here
# would load LangGraph for every `kernos ps`.
STATES = ("pending", "running", "waiting", "suspended", "done", "failed", "killed")
FINISHED = frozenset({"done", "failed", "killed"})
MAX_WAIT = 300.0


def _state(process: dict[str, Any]) -> str:
    waiting_on = process.get("waiting_on")
    return f"{process['state']} ({waiting_on})" if waiting_on else str(process["state"])


def _print_output(output: Any) -> None:
    if isinstance(output, str):
        click.echo(output)
    else:
        print_json(output)


@click.command()
@click.argument("agent")
@click.option("--input", "input_json", metavar="JSON", help="Input of the agent: a JSON object.")
@click.option("--priority", type=int, help="Override the agent's default priority.")
@click.option("--wait", is_flag=True, help="Wait for the process to finish; print its output.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, max=MAX_WAIT),
    metavar="S",
    help=f"With --wait: stop waiting after S seconds (default and most: {MAX_WAIT:g}). "
    "The process runs on either way.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the process as JSON.")
@click.pass_context
def run(
    ctx: click.Context,
    agent: str,
    input_json: str | None,
    priority: int | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Start a run of AGENT on the running kernel.

    Prints the new process's pid and state. With --wait, prints the output once the process
    is done; a failed or killed process is exit 1, and one still going when the wait ends
    (waiting for a human, or past --timeout) prints its pid and state and exits 0.

    \b
    Examples:
      kernos run hello --input '{"name": "Ada"}'
      kernos run hello --input '{"name": "Ada"}' --wait --json
    """
    if timeout is not None and not wait:
        raise click.UsageError("--timeout needs --wait")
    payload = (
        parse_json_option(input_json, option="--input", want_object=True) if input_json else {}
    )
    with connect() as client:
        process = client.run(
            agent, payload, priority=priority, wait=(timeout or MAX_WAIT) if wait else None
        )
    pid, state = process["pid"], process["state"]
    if as_json:
        print_json(process)
    elif not wait or state not in FINISHED:
        click.echo(f"{pid} {_state(process)}")
    elif state == "done":
        _print_output(process["output"])
    if not wait:
        return
    if state in ("failed", "killed"):
        error = process.get("error") or {}
        reason = f": {error.get('code')}: {error.get('message')}" if error else ""
        click.echo(f"kernos: error: process {pid} {state}{reason}", err=True)
        ctx.exit(1)
    elif state == "waiting":
        click.echo(
            f"kernos: process {pid} is waiting for a human; see `kernos approvals list`", err=True
        )
    elif state not in FINISHED:
        click.echo(f"kernos: process {pid} is still {state}; follow it with `kernos ps`", err=True)


@click.command()
@click.option("--state", type=click.Choice(STATES), help="Only processes in this state.")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Most shown."
)
@click.option("--json", "as_json", is_flag=True, help="Print the processes as JSON.")
def ps(state: str | None, limit: int, as_json: bool) -> None:
    """List the processes of your tenant, newest first.

    \b
    Examples:
      kernos ps
      kernos ps --state waiting --json
    """
    with connect() as client:
        processes = client.processes(state=state, limit=limit)
    if as_json:
        print_json(processes)
        return
    rows = [
        (
            p["pid"],
            p["agent"],
            p["state"],
            p.get("waiting_on") or "-",
            p["owner"],
            p["usage"]["input_tokens"] + p["usage"]["output_tokens"],
            p["usage"]["tool_calls"],
            age(p.get("created_at")),
        )
        for p in processes
    ]
    print_table(rows, ["PID", "AGENT", "STATE", "WAITING", "OWNER", "TOKENS", "TOOLS", "AGE"])


def _signal_command(signal: str, summary: str, example_note: str) -> click.Command:
    @click.command(
        name=signal,
        help=f"{summary}\n\n{example_note}\n\n\b\nExample:\n  kernos {signal} 42",
    )
    @click.argument("pid", type=click.IntRange(min=1))
    @click.option("--json", "as_json", is_flag=True, help="Print the process as JSON.")
    def command(pid: int, as_json: bool) -> None:
        with connect() as client:
            process = client.signal(pid, signal)
        if as_json:
            print_json(process)
            return
        state = process["state"]
        note = ""
        if signal == "kill" and state in ("done", "failed"):
            note = " (already finished; nothing to kill)"
        elif signal == "kill" and state != "killed":
            note = " (stops at its next step)"
        elif signal == "suspend" and state != "suspended":
            note = " (suspends at its next step)"
        click.echo(f"{pid} {_state(process)}{note}")

    return command


kill = _signal_command(
    "kill",
    "Kill process PID and its children.",
    "A running process stops at its next step boundary. Killing a process that already "
    "finished changes nothing and exits 0, so scripts can kill without checking first.",
)
suspend = _signal_command(
    "suspend",
    "Suspend process PID; `kernos resume PID` continues it from its last step.",
    "A running process suspends at its next step boundary. Suspending a finished or already "
    "suspended process is exit 2.",
)
resume = _signal_command(
    "resume",
    "Resume suspended process PID from its last checkpoint.",
    "Resuming a process that is not suspended is exit 2.",
)
