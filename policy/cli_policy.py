"""``kernos policy check|list|add|remove|approval-rules``: the Casbin policy and the approval
rules, through the kernel's API."""

from __future__ import annotations

import sys

import click

from kernos.kernel.cli.output import print_json, print_table
from kernos.kernel.cli.remote import connect
from kernos.kernel.errors import EXIT_DENIED, InvalidInput


def policy_line(words: tuple[str, ...]) -> str:
    """``g alice operator city`` or ``"g, alice, operator, city"`` as one policy line."""
    if not words:
        raise InvalidInput("give a policy line, e.g. 'g, alice, operator, city'")
    if len(words) == 1:
        return words[0]
    return ", ".join(w.strip().strip(",") for w in words)


@click.group()
def policy() -> None:
    """Check, list and change who may do what (Casbin, RBAC with tenants as domains).

    \b
    Lines:
      p, ROLE|SUBJECT, TENANT|*, OBJECT, ACTION, allow|deny
      g, PRINCIPAL, ROLE, TENANT
    Objects: tool:NAME model:NAME memory:NAME agent:NAME process:* approval:* audit:* ...
    Actions: call read write spawn signal approve admin

    \b
    Examples:
      kernos policy check alice city tool:dispatch_trucks call
      kernos policy add g alice operator city
      kernos policy remove "p, operator, city, tool:dispatch_trucks, call, allow"
      kernos policy list --json
      kernos policy approval-rules add \\
        "a, default, tool:dispatch_trucks, call, hazard == true, inspector, 15m, admin"
    """


@policy.command()
@click.argument("subject")
@click.argument("tenant")
@click.argument("obj", metavar="OBJECT")
@click.argument("action")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def check(subject: str, tenant: str, obj: str, action: str, as_json: bool) -> None:
    """May SUBJECT do ACTION on OBJECT in TENANT? Exit 0 allow, 3 deny; prints the rule."""
    with connect() as client:
        decision = client.call(
            "GET",
            "/v1/policy/check",
            params={"subject": subject, "tenant": tenant, "object": obj, "action": action},
        )
    if as_json:
        print_json(decision)
    else:
        verdict = "allow" if decision["allowed"] else "deny"
        click.echo(f"{verdict}: {decision['rule']}")
    if not decision["allowed"]:
        sys.exit(EXIT_DENIED)


@policy.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the lines as JSON.")
def list_policy(as_json: bool) -> None:
    """List the policy lines of your tenant (and those for every tenant, '*')."""
    with connect() as client:
        lines = client.call("GET", "/v1/policy")["data"]
    if as_json:
        print_json(lines)
        return
    print_table([(line,) for line in lines], ["LINE"])


@policy.command()
@click.argument("words", nargs=-1, required=True)
def add(words: tuple[str, ...]) -> None:
    """Add a line; it applies at once (no restart). A line that fails to parse changes nothing."""
    line = policy_line(words)
    with connect() as client:
        client.call("POST", "/v1/policy", json={"line": line})
    click.echo(f"added: {line}")


@policy.command()
@click.argument("words", nargs=-1, required=True)
def remove(words: tuple[str, ...]) -> None:
    """Remove a line (exit 2 if there is no such line)."""
    line = policy_line(words)
    with connect() as client:
        client.call("POST", "/v1/policy/remove", json={"line": line})
    click.echo(f"removed: {line}")


def rule_line(words: tuple[str, ...]) -> str:
    """An approval rule given as one quoted argument or as several words (joined by spaces:
    the rule's own commas separate its fields)."""
    if not words:
        raise InvalidInput(
            "give an approval rule, e.g. "
            "'a, default, tool:dispatch_trucks, call, hazard == true, inspector, 15m, admin'"
        )
    return " ".join(words)


@policy.group("approval-rules")
def approval_rules() -> None:
    """List and change which allowed calls wait for a human first.

    \b
    Rule:
      a, TENANT|*, OBJECT, ACTION, CONDITION, ROLE[, DEADLINE[, ESCALATION...]]
    CONDITION: * (always) or ARG OP VALUE joined by 'and'; OP one of == != < <= > >= in;
    VALUE a JSON literal; ARG a dotted path into the call's arguments.
    DEADLINE: 30s, 15m, 2h, 1d, 1h30m or - (none). ESCALATION: the roles asked next, in
    order, each time a deadline passes; after the last one the approval expires (denied).

    \b
    Examples:
      kernos policy approval-rules add \\
        "a, default, tool:dispatch_trucks, call, hazard == true, inspector, 15m, admin"
      kernos policy approval-rules list --json
      kernos policy approval-rules remove "a, default, tool:wire_*, call, *, admin"
    """


@approval_rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rules as JSON.")
def list_rules(as_json: bool) -> None:
    """List the approval rules of your tenant (and those for every tenant), in the order
    they are tried."""
    with connect() as client:
        rules = client.call("GET", "/v1/policy/approval-rules")["data"]
    if as_json:
        print_json(rules)
        return
    print_table([(rule["line"],) for rule in rules], ["RULE"])


@approval_rules.command("add")
@click.argument("words", nargs=-1, required=True)
def add_rule(words: tuple[str, ...]) -> None:
    """Add a rule; it applies at once. A rule that fails to parse changes nothing."""
    with connect() as client:
        rule = client.call("POST", "/v1/policy/approval-rules", json={"line": rule_line(words)})
    click.echo(f"added: {rule['line']}")


@approval_rules.command("remove")
@click.argument("words", nargs=-1, required=True)
def remove_rule(words: tuple[str, ...]) -> None:
    """Remove a rule (exit 2 if there is no such rule)."""
    line = rule_line(words)
    with connect() as client:
        client.call("POST", "/v1/policy/approval-rules/remove", json={"line": line})
    click.echo(f"removed: {line}")
