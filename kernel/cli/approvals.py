"""``kernos approvals list|approve|deny``: questions processes asked a human."""

from __future__ import annotations

from typing import Any

import click

from kernos.kernel.cli.output import print_json, print_table
from kernos.kernel.cli.remote import age, connect, parse_json_option


@click.group()
def approvals() -> None:
    """List and answer the questions processes asked a human.

    \b
    Examples:
      kernos approvals list
      kernos approvals approve 8f2c... --value '"north"' --comment "depot north is open"
      kernos approvals deny 8f2c... --comment "not today"
    """


@approvals.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "approved", "denied", "expired", "all"]),
    default="pending",
    show_default=True,
    help="Which approvals to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the approvals as JSON.")
def list_approvals(status: str, as_json: bool) -> None:
    """List approvals of your tenant, oldest first.

    \b
    Example:
      kernos approvals list --status all --json
    """
    with connect() as client:
        found = client.approvals(status=status)
    if as_json:
        print_json(found)
        return
    rows = [
        (a["id"], a["pid"], a["kind"], a["status"], age(a.get("created_at")), a["question"])
        for a in found
    ]
    print_table(rows, ["ID", "PID", "KIND", "STATUS", "AGE", "QUESTION"])


def _decided(approval: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(approval)
    else:
        click.echo(f"{approval['id']} {approval['status']}; process {approval['pid']} resumes")


@approvals.command()
@click.argument("approval_id", metavar="ID")
@click.option("--value", "value_json", metavar="JSON", help="The answer's value, as JSON.")
@click.option("--comment", help="Why; recorded with the decision.")
@click.option("--json", "as_json", is_flag=True, help="Print the approval as JSON.")
def approve(approval_id: str, value_json: str | None, comment: str | None, as_json: bool) -> None:
    """Approve ID; its process resumes with the answer (--value, if the question needs one).

    \b
    Example:
      kernos approvals approve 8f2c... --value 3 --comment "three trucks"
    """
    value = parse_json_option(value_json, option="--value") if value_json is not None else None
    with connect() as client:
        approval = client.decide(approval_id, approved=True, value=value, comment=comment)
    _decided(approval, as_json=as_json)


@approvals.command()
@click.argument("approval_id", metavar="ID")
@click.option("--comment", help="Why; the process sees it with the denial.")
@click.option("--json", "as_json", is_flag=True, help="Print the approval as JSON.")
def deny(approval_id: str, comment: str | None, as_json: bool) -> None:
    """Deny ID; its process resumes knowing the answer was no.

    \b
    Example:
      kernos approvals deny 8f2c... --comment "not during rush hour"
    """
    with connect() as client:
        approval = client.decide(approval_id, approved=False, comment=comment)
    _decided(approval, as_json=as_json)
