"""``kernos events dlq|replay``: the dead-letter queue of the event bus."""

from __future__ import annotations

import click

from kernos.kernel.cli.output import print_json, print_table
from kernos.kernel.cli.remote import age, connect


@click.group()
def events() -> None:
    """Inspect and replay events whose delivery failed every attempt.

    \b
    Examples:
      kernos events dlq
      kernos events replay 12
    """


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
