"""``kernos memory put|search|forget``: long-term memory, through the running kernel's API."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click

from kernos.kernel.cli.output import print_json, print_table
from kernos.kernel.cli.remote import connect
from kernos.kernel.errors import InvalidInput


def parse_pairs(pairs: tuple[str, ...], *, option: str) -> dict[str, Any]:
    """``k=v`` pairs as a dict; a value that reads as a JSON number or boolean is one
    (``level=3``, ``urgent=true``), anything else is a string (``zip=02134`` included)."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{option} {pair!r} must be KEY=VALUE")
        value: Any = raw
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, bool | int | float):
            value = parsed
        found[key.strip()] = value
    return found


def _path(collection: str, suffix: str = "") -> str:
    return f"/v1/memory/{quote(collection, safe='')}{suffix}"


@click.group()
def memory() -> None:
    """Put, search and forget long-term memories (collections of your tenant).

    \b
    Examples:
      kernos memory put --collection notes "Bin 17 overflows on Mondays" --meta street=Elm
      kernos memory search --collection notes --limit 3 "which bins are too full?"
      kernos memory forget --collection notes --where street=Elm
    """


@memory.command()
@click.option("--collection", "-c", required=True, help="Collection to store into.")
@click.option("--meta", multiple=True, metavar="K=V", help="Metadata (repeatable).")
@click.option("--id", "doc_id", help="Id of the document (default: a new one).")
@click.option("--agent", help="Scope the collection to this agent.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("text")
def put(
    collection: str,
    meta: tuple[str, ...],
    doc_id: str | None,
    agent: str | None,
    as_json: bool,
    text: str,
) -> None:
    """Store TEXT in a collection; prints its id."""
    body: dict[str, Any] = {"documents": [text]}
    metadata = parse_pairs(meta, option="--meta")
    if metadata:
        body["metadatas"] = [metadata]
    if doc_id:
        body["ids"] = [doc_id]
    if agent:
        body["agent"] = agent
    with connect() as client:
        stored = client.call("POST", _path(collection), json=body)
    if as_json:
        print_json(stored)
    else:
        click.echo(stored["ids"][0])


@memory.command()
@click.option("--collection", "-c", required=True, help="Collection to search.")
@click.option("--limit", "-n", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option("--where", multiple=True, metavar="K=V", help="Metadata filter (repeatable).")
@click.option("--agent", help="Search the collection scoped to this agent.")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
@click.argument("query")
def search(
    collection: str,
    limit: int,
    where: tuple[str, ...],
    agent: str | None,
    as_json: bool,
    query: str,
) -> None:
    """The memories nearest in meaning to QUERY, nearest first."""
    body: dict[str, Any] = {"query": query, "limit": limit}
    filters = parse_pairs(where, option="--where")
    if filters:
        body["where"] = filters
    if agent:
        body["agent"] = agent
    with connect() as client:
        hits = client.call("POST", _path(collection, "/search"), json=body)["data"]
    if as_json:
        print_json(hits)
        return
    rows = [
        (h["id"], f"{h['distance']:.3f}", _short(h["text"]), _meta(h["metadata"])) for h in hits
    ]
    print_table(rows, ["ID", "DISTANCE", "TEXT", "METADATA"])


@memory.command()
@click.option("--collection", "-c", required=True, help="Collection to delete from.")
@click.option("--where", multiple=True, metavar="K=V", help="Delete what matches (repeatable).")
@click.option("--agent", help="The collection scoped to this agent.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("ids", nargs=-1, metavar="[ID]...")
def forget(
    collection: str, where: tuple[str, ...], agent: str | None, as_json: bool, ids: tuple[str, ...]
) -> None:
    """Delete memories by ID, or every one matching --where."""
    filters = parse_pairs(where, option="--where")
    if bool(ids) == bool(filters):
        raise InvalidInput("give the ids to forget, or --where KEY=VALUE (not both)")
    body: dict[str, Any] = {"ids": list(ids)} if ids else {"where": filters}
    if agent:
        body["agent"] = agent
    with connect() as client:
        result = client.call("POST", _path(collection, "/forget"), json=body)
    if as_json:
        print_json(result)
    else:
        click.echo(f"forgot {result['forgotten']}")


def _short(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _meta(metadata: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in metadata.items()) or "-"
