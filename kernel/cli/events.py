"""``kernos events list|dlq|replay``: published events and the dead-letter queue."""

from __future__ import annotations

import json

import click

from kernos.kernel.cli.output import print_json, print_table
from kernos.kernel.cli.remote import age, connect


@click.group()
def events() -> None:
    """List published events; inspect and replay those whose delivery failed every attempt.

    \b
    Examples:
      kernos events list --topic 'sensor.*'
      kernos events dlq
      kernos events replay 12
    """


@events.command(name="list")
@click.option("--topic", metavar="TOPIC", help="A topic, or a prefix ending in * (sensor.*).")
@click.option("--after", type=click.IntRange(min=0), metavar="SEQ", help="Only after this seq.")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Most listed."
)
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
def list_events(topic: str | None, after: int | None, limit: int, as_json: bool) -> None:
    """List your tenant's published events, oldest first: the newest LIMIT, or the first
    LIMIT after --after SEQ (the SEQ column).

    \b
    Example:
      kernos events list --topic 'sensor.*' --after 1200 --json
    """
    with connect() as client:
        page = client.events(after=after, topic=topic, limit=limit)
    if as_json:
        print_json(page["data"])
        return
    rows = [
        (
            e["seq"],
            e["topic"],
            e["source"],
            age(e.get("time")),
            json.dumps(e.get("data"), separators=(",", ":"), default=str)[:60],
        )
        for e in page["data"]
    ]
    print_table(rows, ["SEQ", "TOPIC", "SOURCE", "AGE", "DATA"])


@events.command()
@click.option("--all", "include_replayed", is_flag=True, help="Also list replayed ones.")
@click.option("--json", "as_json", is_flag=True, help="Print the dead letters as JSON.")
def dlq(include_replayed: bool, as_json: bool) -> None:
    """List dead letters of your tenant, newest first."""
    with connect() as client:
        found = client.dead_letters(include_replayed=include_replayed)
    if as_json:
        print_json(found)
        return
    rows = [
        (
            d["id"],
            d["event"]["topic"],
            d["event"]["id"],
            d["subscriber"],
            d["attempts"],
            age(d.get("created_at")),
            (d.get("error") or "")[:60],
        )
        for d in found
    ]
    print_table(rows, ["ID", "TOPIC", "EVENT", "SUBSCRIBER", "TRIES", "AGE", "LAST ERROR"])


@events.command()
@click.argument("dead_letter_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the replayed dead letter as JSON.")
def replay(dead_letter_id: int, as_json: bool) -> None:
    """Deliver a dead letter again (a fresh delivery with all its attempts)."""
    with connect() as client:
        replayed = client.replay(dead_letter_id)
    if as_json:
        print_json(replayed)
    else:
        click.echo(f"dead letter {replayed['id']} replayed to {replayed['subscriber']}")
