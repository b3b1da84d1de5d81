"""``kernos retention show|run``: the retention policy in force, and a purge pass on demand."""

from __future__ import annotations

from typing import Any

import click

from kernos.kernel.cli.output import print_json, print_table
from kernos.kernel.cli.remote import connect

PURGE_TIMEOUT = 600.0
"""Seconds a purge pass may take before the command gives up waiting (the pass goes on)."""


@click.group()
def retention() -> None:
    """Show the retention policy and run a purge pass on the running kernel.

    \b
    Examples:
      kernos retention show
      kernos retention run --dry-run
      kernos retention run --json
    """


@retention.command()
@click.option("--json", "as_json", is_flag=True, help="Print the policy as JSON.")
def show(as_json: bool) -> None:
    """Print the retention policy in force (for your tenant) and the last pass."""
    with connect() as client:
        found = client.call("GET", "/v1/retention")
    if as_json:
        print_json(found)
        return
    effective = found["effective"]
    rows = [
        ("checkpoints", "keep_last", _shown(effective["checkpoints"]["keep_last"])),
        ("checkpoints", "max_age", _age(effective["checkpoints"]["max_age"])),
        ("journal", "max_age", _age(effective["journal"]["max_age"])),
        ("idempotency", "max_age", _age(effective["idempotency"]["max_age"])),
        ("dead_letters", "max_age", _age(effective["dead_letters"]["max_age"])),
    ]
    for pattern, ttl in effective["memory"]["ttl"].items():
        rows.append(("memory", f"ttl {pattern}", _age(ttl)))
    if not effective["memory"]["ttl"]:
        rows.append(("memory", "ttl", "keep"))
    policy = found["policy"]
    rows.append(("audit", "archive_after", _age(policy["audit"]["archive_after"])))
    interval = policy["interval"]
    every = "no background pass" if interval is None else f"a pass every {_age(interval)}"
    click.echo(f"tenant {found['tenant']}; {every}")
    print_table(rows, ["KIND", "RULE", "VALUE"])
    last = found.get("last_report")
    if last is not None:
        click.echo(f"last pass {last['started_at']}: {_total(last)} rows")


@retention.command()
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def run(dry_run: bool, as_json: bool) -> None:
    """Purge what the policy says is due now (every tenant from the default tenant)."""
    if not as_json:
        click.echo("purging..." if not dry_run else "counting...", err=True)
    with connect() as client:
        report = client.call(
            "POST", "/v1/retention/purge", json={"dry_run": dry_run}, timeout=PURGE_TIMEOUT
        )
    if as_json:
        print_json(report)
        return
    rows = [
        (tenant, kind, name, n)
        for tenant, kinds in sorted(report["tenants"].items())
        for kind, counts in kinds.items()
        for name, n in counts.items()
        if n
    ]
    if rows:
        print_table(rows, ["TENANT", "KIND", "WHAT", "WOULD DELETE" if dry_run else "DELETED"])
    else:
        click.echo("nothing was due")
    for path in report["archived"]:
        click.echo(f"archived {path}")
    for problem in report["problems"]:
        click.echo(f"problem: {problem}", err=True)


def _shown(value: Any) -> str:
    return "keep all" if value is None else str(value)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "keep"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _total(report: dict[str, Any]) -> int:
    return sum(
        n
        for kinds in report["tenants"].values()
        for counts in kinds.values()
        for n in counts.values()
    )
