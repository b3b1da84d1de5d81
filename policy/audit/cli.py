"""``kernos audit``: tail, export, checkpoint and verify the audit log; make a signing key.

``tail``, ``export``, ``checkpoint`` and ``verify`` are clients of the running kernel's API;
``verify --offline`` reads a database file (or PostgreSQL) directly and read-only, with no
kernel running — an auditor's check; ``keygen`` writes a key file. Exit statuses: 0 ok,
1 the log is damaged (one line on stderr naming the seq and kind), 2 bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from kernos.kernel.cli.output import print_json, print_table
from kernos.kernel.client import KernosClient
from kernos.kernel.errors import EXIT_CHECK_FAILED
from kernos.kernel.settings import load_settings

PAGE = 1000


def _connect() -> KernosClient:
    return KernosClient.from_settings(load_settings())


@click.group()
def audit() -> None:
    """The tamper-evident audit log: hash-chained records, signed checkpoints.

    \b
    Examples:
      kernos audit tail --pid 42
      kernos audit checkpoint
      kernos audit verify --witness /mnt/witness/kernos.jsonl
      kernos audit verify --offline --database ~/.kernos/kernos.db
    """


@audit.command()
@click.option("--tenant", help="Only this tenant's records (your own, for now).")
@click.option("--pid", type=click.IntRange(min=1), help="Only this process's records.")
@click.option("--event", help="Only this event (syscall.intent, syscall.denied, …).")
@click.option(
    "--limit", type=click.IntRange(1, PAGE), default=20, show_default=True, help="Most shown."
)
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def tail(tenant: str | None, pid: int | None, event: str | None, limit: int, as_json: bool) -> None:
    """Show the newest audit records of your tenant, oldest first."""
    with _connect() as client:
        page = client.call(
            "GET",
            "/v1/audit",
            params={"tenant": tenant, "pid": pid, "event": event, "limit": limit},
        )
    records: list[dict[str, Any]] = page["data"]
    if as_json:
        print_json(records)
        return
    rows = [
        (
            r["seq"],
            r["ts"][:19].replace("T", " "),
            r["event"],
            r["principal"],
            r["pid"] if r["pid"] is not None else "-",
            r["target"] or "-",
            r["decision"] or "-",
            (r["summary"] or r["rule"] or "")[:60],
        )
        for r in records
    ]
    print_table(rows, ["SEQ", "TIME (UTC)", "EVENT", "PRINCIPAL", "PID", "TARGET", "DECISION", ""])


@audit.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl"]),
    default="jsonl",
    show_default=True,
    help="One JSON record (with its hashes and body) per line.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout."
)
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this seq.")
def export(fmt: str, out: Path | None, after: int) -> None:
    """Export your tenant's audit records, oldest first."""
    handle = out.open("w", encoding="utf-8") if out is not None else sys.stdout
    count = 0
    try:
        with _connect() as client:
            cursor = after
            while True:
                page = client.call(
                    "GET", "/v1/audit", params={"after": cursor, "limit": PAGE, "body": "true"}
                )
                for record in page["data"]:
                    handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
                    handle.write("\n")
                count += page["count"]
                if page["count"] < PAGE:
                    break
                cursor = page["next_after"]
    finally:
        if out is not None:
            handle.close()
    if out is not None:
        click.echo(f"exported {count} records to {out}", err=True)


@audit.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print the checkpoint as one witness JSON line."
)
@click.pass_context
def checkpoint(ctx: click.Context, as_json: bool) -> None:
    """Sign the records since the last checkpoint (Merkle root, Ed25519) and export it to
    the configured witness (KERNOS_AUDIT_WITNESS).

    Keep the printed JSON line somewhere the database's writers cannot reach: `kernos audit
    verify --witness FILE` catches a rewritten or truncated history with it. Exit 1 if the
    export to the witness failed (the checkpoint is stored all the same).
    """
    with _connect() as client:
        result = client.call("POST", "/v1/audit/checkpoints")
    entry = result["checkpoint"]
    if as_json:
        if entry is not None:
            click.echo(json.dumps(entry, sort_keys=True, separators=(",", ":")))
    elif entry is None:
        click.echo("the audit log is empty: nothing to sign")
    elif not result["created"]:
        click.echo(
            f"nothing new since checkpoint {entry['id']} "
            f"(records {entry['first_seq']}..{entry['last_seq']})"
        )
    else:
        witness = f"; exported to {result['witness']}" if result["witness"] else ""
        click.echo(
            f"checkpoint {entry['id']}: records {entry['first_seq']}..{entry['last_seq']}, "
            f"root {entry['root'][:16]}…, key {entry['key_fingerprint'][:16]}…{witness}"
        )
    if result["created"] and result["witness"] is None and not as_json:
        click.echo(
            "kernos: warning: no witness configured (KERNOS_AUDIT_WITNESS); keep the "
            "checkpoint yourself (--json prints its witness line)",
            err=True,
        )
    if result.get("witness_error"):
        click.echo(
            f"kernos: error: checkpoint {entry['id']} was not exported to "
            f"{result['witness']}: {result['witness_error']}",
            err=True,
        )
        ctx.exit(EXIT_CHECK_FAILED)


@audit.command()
@click.option("--offline", is_flag=True, help="Read the database directly, read-only.")
@click.option(
    "--database",
    metavar="URL",
    help="With --offline: the database (a SQLite path or URL); default: KERNOS_HOME's.",
)
@click.option(
    "--witness",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Witness file (JSON lines of signed checkpoints) to compare with.",
)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    metavar="KEY",
    help="With --offline: a trusted signing key (64 hex digits or a PEM file); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def verify(
    ctx: click.Context,
    offline: bool,
    database: str | None,
    witness: Path | None,
    public_keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Verify every record's hash, its columns against its hashed body, and every signed
    checkpoint; exit 1 naming the first bad seq and the kind of damage (altered, deleted,
    reordered, truncated, rechained)."""
    from kernos.policy.audit.verify import VerifyResult, verify_offline

    if not offline and (database or public_keys):
        raise click.UsageError("--database and --public-key need --offline")
    if offline:
        settings = load_settings()
        url = _database_url(database) if database else settings.db_url
        keys = list(public_keys)
        if not keys and settings.audit_signing_key is not None:
            keys = [str(settings.audit_signing_key)]
        result = verify_offline(url, witness=witness, public_key=keys or None)
    else:
        with _connect() as client:
            if witness is None:
                data = client.call("GET", "/v1/audit/verify")
            else:
                lines = witness.read_text(encoding="utf-8").splitlines()
                data = client.call("POST", "/v1/audit/verify", json={"witness": lines})
        result = VerifyResult.from_dict(data)
    if as_json:
        print_json(result.as_dict())
    elif result.ok:
        click.echo(result.summary())
        if result.detail:
            click.echo(f"kernos: note: {result.detail}", err=True)
    if not result.ok:
        click.echo(
            f"kernos: audit log damaged at seq {result.first_bad_seq}: {result.kind}: "
            f"{' '.join(result.detail.split())}",
            err=True,
        )
        ctx.exit(EXIT_CHECK_FAILED)


def _database_url(value: str) -> str:
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().absolute()}"


@audit.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the private key (PEM, mode 0600); outside KERNOS_HOME.",
)
def keygen(out: Path) -> None:
    """Write a new Ed25519 checkpoint signing key and print its public key.

    Point KERNOS_AUDIT_SIGNING_KEY at it; give the public key to auditors
    (`kernos audit verify --offline --public-key HEX`).
    """
    from kernos.policy.audit.signing import fingerprint, generate_key

    public = generate_key(out, home=load_settings().home)
    click.echo(f"public key  {public}")
    click.echo(f"fingerprint {fingerprint(public)}")
    click.echo(f"wrote {out} (mode 0600); set KERNOS_AUDIT_SIGNING_KEY={out}", err=True)


@audit.command()
@click.argument("token")
@click.option("--reason", help="Why you need the original (recorded in the audit log).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def reveal(token: str, reason: str | None, as_json: bool) -> None:
    """Show the original behind a redaction TOKEN ([EMAIL:tok_…]); the reveal is audited.

    \b
    Example:
      kernos audit reveal '[EMAIL:tok_3f9a0c1d2e4b5a697887]' --reason "incident 42"
    """
    with _connect() as client:
        found = client.call("POST", "/v1/audit/reveal", json={"token": token, "reason": reason})
    if as_json:
        print_json(found)
    else:
        click.echo(found["original"])
