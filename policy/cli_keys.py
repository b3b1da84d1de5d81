"""``kernos keys create|list|revoke``: API keys, through the running kernel's API."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

from kernos.kernel.cli.output import print_json, print_table
from kernos.kernel.cli.remote import age, connect
from kernos.kernel.errors import InvalidInput

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(text: str, *, now: datetime | None = None) -> datetime:
    """``30d``, ``12h``, ``2w`` (from now) or an ISO 8601 date/time (UTC if no zone given)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        if amount <= 0:
            raise InvalidInput(f"--expires {text!r} must be a positive duration")
        return now + timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"--expires {text!r} is neither a duration (30d, 12h, 2w) nor an ISO date "
            "(2027-01-31 or 2027-01-31T12:00:00+00:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (each key acts as one principal with one role).

    \b
    Examples:
      kernos keys create --principal forwarder-1 --tenant city --role operator --expires 90d
      kernos keys list --json
      kernos keys revoke key_0123456789ab
    """


@keys.command()
@click.option("--principal", required=True, help="Who the key acts as (created if missing).")
@click.option("--tenant", help="The principal's tenant (default: yours).")
@click.option("--role", required=True, help="Role granted in the tenant: admin, operator, ...")
@click.option("--expires", metavar="D", help="Expiry: a duration (30d, 12h) or an ISO date.")
@click.option("--description", default="", help="What the key is for.")
@click.option("--json", "as_json", is_flag=True, help="Print the key and its token as JSON.")
def create(
    principal: str,
    tenant: str | None,
    role: str,
    expires: str | None,
    description: str,
    as_json: bool,
) -> None:
    """Create a key. Its token is shown now and never again: store it safely."""
    body = {
        "principal": principal,
        "tenant": tenant,
        "role": role,
        "expires_at": parse_expiry(expires).isoformat() if expires else None,
        "description": description,
    }
    with connect() as client:
        created = client.call("POST", "/v1/keys", json=body)
    if as_json:
        print_json(created)
        return
    click.echo(
        f"Created {created['key_id']} for {created['tenant']}/{created['principal']} "
        f"(role {created['role']}, expires {created['expires_at'] or 'never'})."
    )
    click.echo("Token (shown once; store it now):")
    click.echo(created["token"])


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
def list_keys(as_json: bool) -> None:
    """List your tenant's keys (never their tokens)."""
    with connect() as client:
        found = client.call("GET", "/v1/keys")["data"]
    if as_json:
        print_json(found)
        return
    rows = [
        (
            k["key_id"],
            k["principal"],
            k["role"],
            k["status"],
            age(k["created_at"]),
            k["expires_at"] or "never",
            k["description"],
        )
        for k in found
    ]
    print_table(rows, ["KEY", "PRINCIPAL", "ROLE", "STATUS", "AGE", "EXPIRES", "DESCRIPTION"])


@keys.command()
@click.argument("key_id", metavar="KEY_ID")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked key as JSON.")
def revoke(key_id: str, as_json: bool) -> None:
    """Revoke KEY_ID now; requests with its token fail from this moment."""
    with connect() as client:
        key = client.call("POST", f"/v1/keys/{key_id}/revoke")
    if as_json:
        print_json(key)
    else:
        click.echo(f"{key['key_id']} revoked")
