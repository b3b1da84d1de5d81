"""Policy lines: grammar, canonical form and the errors a bad line gets (no database)."""

from __future__ import annotations

import pytest

from kernos.kernel.errors import InvalidInput
from kernos.policy.rules import (
    DEFAULT_POLICY_PATH,
    MODEL_PATH,
    PolicyLine,
    check_roles,
    defined_roles,
    parse_line,
    parse_policy_text,
)


def test_the_default_policy_and_model_ship_with_the_package() -> None:
    assert MODEL_PATH.is_file()
    lines = parse_policy_text(DEFAULT_POLICY_PATH.read_text(), source="default")
    roles = defined_roles(lines)
    assert {"admin", "operator", "inspector", "viewer"} <= roles
    assert PolicyLine("g", ("admin", "role:admin", "default")) in lines
    # Every role's rules hold in every tenant; roles are given per tenant.
    assert all(line.tenant == "*" for line in lines if line.ptype == "p")


def test_a_line_is_canonicalized() -> None:
    line = parse_line("  p,operator ,  city, tool:route ,call ,allow ")
    assert line.text == "p, role:operator, city, tool:route, call, allow"
    # The effect defaults to allow; a role assignment's role may be written bare.
    assert parse_line("p, alice, city, tool:route, call").fields[-1] == "allow"
    assert parse_line("g, alice, operator, city").text == "g, alice, role:operator, city"
    assert parse_line("g, agent:dispatcher, role:operator, *").tenant == "*"
    # A principal that is not a role name stays a principal.
    assert parse_line("p, alice, city, tool:*, call, deny").subject == "alice"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty policy line"),
        ("x, alice, city, tool:a, call, allow", "must start with 'p'.*or 'g'"),
        ("p, alice, city, tool:a", "a rule has 5 fields after 'p'.*got 3"),
        ("p, alice, city, tool:a, call, allow, extra", "got 6"),
        ("p, alice, , tool:a, call, allow", "a field is empty"),
        ("p, alice, city, tool:a, call, maybe", "effect 'maybe' must be allow or deny"),
        ("p, alice, city, tool:a, delete, allow", "unknown action 'delete'.*actions are"),
        ("p, alice, city, file:a, call, allow", "unknown object kind 'file'.*kinds are"),
        ("p, alice, city, tool, call, allow", "must be KIND:NAME"),
        ("p, alice, city, tool:a*b, call, allow", "object name 'a\\*b'"),
        ("p, Alice, city, tool:a, call, allow", "subject 'Alice' is not a principal name"),
        ("p, alice, City!, tool:a, call, allow", "tenant 'City!' is not a tenant name"),
        ('p, alice, city, "tool:a", call, allow', "is not allowed in a line"),
        ("g, alice, operator", "a role assignment has 3 fields after 'g'.*got 2"),
        ("g, role:viewer, role:operator, city", "roles do not inherit"),
        ("g, alice, agent:x, city", "is not a role"),
        ("g, alice, Op, city", "'role:Op' is not a valid role name"),
    ],
)
def test_a_malformed_line_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_line(text)


def test_an_unknown_role_is_refused_and_a_defined_one_accepted() -> None:
    lines = [parse_line("p, role:dispatcher, *, tool:*, call, allow")]
    roles = defined_roles(lines)
    check_roles(parse_line("g, bob, dispatcher, city", roles=roles), roles)
    with pytest.raises(InvalidInput, match="unknown role 'opertor'.*roles are admin"):
        check_roles(parse_line("g, alice, opertor, city"), roles)


def test_a_bad_policy_file_names_the_line() -> None:
    text = "# comment\n\np, role:ops, *, tool:*, call, allow\ng, alice, ops, city\np, bob\n"
    with pytest.raises(InvalidInput, match="policy.csv, line 5: .*5 fields"):
        parse_policy_text(text, source="policy.csv")
    with pytest.raises(InvalidInput, match="policy.csv, line 1: .*unknown role 'nope'"):
        parse_policy_text("g, alice, nope, city\n", source="policy.csv")
    # A role defined anywhere in the file may be used above its rules, even bare.
    parsed = parse_policy_text("g, alice, ops, city\np, role:ops, *, *, read\n", source="f")
    assert [line.text for line in parsed] == [
        "g, alice, role:ops, city",
        "p, role:ops, *, *, read, allow",
    ]
