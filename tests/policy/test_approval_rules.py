"""Approval rules: their grammar and conditions, and the rule book on a real database
(SQLite and PostgreSQL) with the real Casbin authorizer in front of it."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from kernos.kernel.clock import SystemClock
from kernos.kernel.errors import Conflict, InvalidInput, NotFound
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import ApprovalRuleRow
from kernos.kernel.syscalls import ApprovalRequirement, AuthRequest
from kernos.policy.approval_book import ApprovalRuleBook
from kernos.policy.approval_rules import key_match, parse_approval_rule, parse_duration
from kernos.policy.authorizer import CasbinAuthorizer
from kernos.policy.conditions import parse_condition
from kernos.policy.engine import PolicyEngine
from kernos.policy.rules import BUILTIN_ROLES

from .conftest import EngineFactory

HAZARD = "a, city, tool:dispatch_trucks, call, hazard == true, inspector, 15m, admin"


def test_a_rule_parses_into_its_requirement_and_canonical_line() -> None:
    rule = parse_approval_rule(
        "a,city,tool:dispatch_trucks,call,hazard==true,role:inspector,900s,admin",
        roles=BUILTIN_ROLES,
    )
    assert rule.text == HAZARD
    assert rule.requirement == ApprovalRequirement(
        role="inspector", deadline_seconds=900.0, escalation=("admin",), rule=HAZARD
    )
    bare = parse_approval_rule("a, *, tool:wire_*, *, *, admin", roles=BUILTIN_ROLES)
    assert bare.text == "a, *, tool:wire_*, *, *, admin"
    assert bare.requirement.deadline_seconds is None and bare.requirement.escalation == ()
    # A JSON value may hold commas and the word "and": only top-level commas split fields.
    tricky = parse_approval_rule(
        'a, city, tool:x, call, zone in ["a, b", "c"] and note == "x and y", operator, '
        "1h30m, inspector, admin",
        roles=BUILTIN_ROLES,
    )
    assert tricky.condition.text == 'zone in ["a, b", "c"] and note == "x and y"'
    assert tricky.deadline_seconds == 5400 and tricky.escalation == ("inspector", "admin")
    assert parse_approval_rule(tricky.text, roles=BUILTIN_ROLES) == tricky


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "empty approval rule"),
        ("p, city, tool:x, call, *, inspector", "must start with 'a, '"),
        ("a, city, tool:x, call, *", "needs at least 6 fields"),
        ("a, city, tool:x, call, , inspector", "a field is empty"),
        ("a, City, tool:x, call, *, inspector", "tenant 'City' is not a tenant name"),
        ("a, city, disk:x, call, *, inspector", "object 'disk:x' must be KIND:NAME"),
        ("a, city, tool:x*y, call, *, inspector", "object name 'x*y'"),
        ("a, city, tool:x, fly, *, inspector", "unknown action 'fly'"),
        ("a, city, tool:x, call, *, wizard", "unknown role 'wizard' (role)"),
        ("a, city, tool:x, call, *, inspector, 15m, wizard", "unknown role 'wizard' (escalation"),
        ("a, city, tool:x, call, *, inspector, 15 minutes", "'15 minutes' is not a duration"),
        ("a, city, tool:x, call, *, inspector, 0m", "must be longer than zero"),
        ("a, city, tool:x, call, *, inspector, -, admin", "escalation chain needs a deadline"),
        ("a, city, tool:x, call, hazard = true, inspector", "expected an operator"),
        ("a, city, tool:x, call, hazard == yes, inspector", "does not start with a JSON value"),
        ("a, city, tool:x, call, n in 3, inspector", "'in' needs a JSON list"),
        ("a, city, tool:x, call, n < [1], inspector", "compares numbers or strings"),
        ("a, city, tool:x, call, a == 1 or b == 2, inspector", "expected 'and' or the end"),
        ("a, city, tool:x, call, 1 == 1, inspector", "expected an argument name"),
        ("a, city, tool:x, call, __import__('os') == 1, inspector", "expected an operator"),
    ],
)
def test_a_bad_rule_is_refused_with_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_approval_rule(line, roles=BUILTIN_ROLES)
    assert message in caught.value.message


def test_durations_and_key_match() -> None:
    assert [parse_duration(d) for d in ("30s", "15m", "2h", "1d", "1h30m", "1.5s")] == [
        30,
        900,
        7200,
        86400,
        5400,
        1.5,
    ]
    assert key_match("tool:dispatch_trucks", "tool:dispatch_*")
    assert key_match("tool:dispatch_trucks", "tool:dispatch_trucks")
    assert not key_match("tool:dispatch", "tool:dispatch_*")
    assert not key_match("tool:dispatch_trucks_x", "tool:dispatch_trucks")


@pytest.mark.parametrize(
    ("condition", "args", "holds"),
    [
        ("hazard == true", {"hazard": True}, True),
        ("hazard == true", {"hazard": False}, False),
        ("hazard == true", {"hazard": 1}, False),  # JSON kinds: 1 is not true
        ("hazard == true", {}, False),  # a missing argument never matches
        ("hazard != true", {}, False),
        ("hazard != true", {"hazard": False}, True),
        ("count == 2", {"count": 2.0}, True),
        ("load.tons > 3.5", {"load": {"tons": 4}}, True),
        ("load.tons > 3.5", {"load": {"tons": "9"}}, False),  # a string is not a number
        ("load.tons <= 3.5", {"load": {"tons": 3.5}}, True),
        ('stops.1 == "b"', {"stops": ["a", "b"]}, True),
        ('stops.5 == "b"', {"stops": ["a", "b"]}, False),
        ('zone in ["north", "east"]', {"zone": "east"}, True),
        ('zone in ["north", "east"]', {"zone": "west"}, False),
        ('zone >= "m"', {"zone": "north"}, True),
        ("a == 1 and b == null", {"a": 1, "b": None}, True),
        ("a == 1 and b == null", {"a": 1}, False),
        ('meta == {"k": [1, true]}', {"meta": {"k": [1, True]}}, True),
        ('meta == {"k": [1, true]}', {"meta": {"k": [1, 1]}}, False),
        ("*", {}, True),
    ],
)
def test_conditions_compare_as_json(condition: str, args: dict, holds: bool) -> None:
    parsed = parse_condition(condition)
    assert parsed.holds(args) is holds
    assert parse_condition(parsed.text) == parsed  # the canonical form parses to itself


ALICE = Principal(tenant="city", name="alice", kind=PrincipalKind.PERSON)


def dispatch(args: dict, *, pid: int | None = 7, tenant: str = "city") -> AuthRequest:
    return AuthRequest(
        principal=ALICE
        if tenant == "city"
        else Principal(tenant=tenant, name="alice", kind=PrincipalKind.PERSON),
        tenant=tenant,
        obj="tool:dispatch_trucks",
        action="call",
        pid=pid,
        args=args,
    )


async def open_book(database: Database, engine: PolicyEngine) -> ApprovalRuleBook:
    book = ApprovalRuleBook(database, clock=SystemClock(), roles=lambda: engine.roles)
    await book.start()
    return book


async def test_the_authorizer_puts_the_first_matching_rule_on_allowed_process_calls(
    database: Database, engine: PolicyEngine
) -> None:
    book = await open_book(database, engine)
    await engine.grant_role("alice", "operator", "city")
    await engine.grant_role("alice", "operator", "town")
    authorizer = CasbinAuthorizer(engine, approval_rules=book)
    assert (await authorizer.authorize(dispatch({"hazard": True}))).approval is None
    await book.add_approval_rule(HAZARD)
    await book.add_approval_rule("a, *, tool:dispatch_*, call, *, operator")
    hazardous = await authorizer.authorize(dispatch({"hazard": True}))
    assert hazardous.allowed and hazardous.approval is not None
    assert hazardous.approval.role == "inspector" and hazardous.approval.rule == HAZARD
    ordinary = await authorizer.authorize(dispatch({"hazard": False}))
    assert ordinary.approval is not None and ordinary.approval.role == "operator"
    # Another tenant: only the rule for every tenant applies.
    other = await authorizer.authorize(dispatch({"hazard": True}, tenant="town"))
    assert other.approval is not None and other.approval.role == "operator"
    # No process (an operator acting through the API): no approval rule applies.
    assert (await authorizer.authorize(dispatch({"hazard": True}, pid=None))).approval is None
    # A denied call is denied; approval rules never turn a denial into an approval.
    bob = AuthRequest(
        principal=Principal(tenant="city", name="bob", kind=PrincipalKind.PERSON),
        tenant="city",
        obj="tool:dispatch_trucks",
        action="call",
        pid=7,
        args={"hazard": True},
    )
    denied = await authorizer.authorize(bob)
    assert not denied.allowed and denied.approval is None


async def test_changes_apply_at_once_and_bad_lines_change_nothing(
    database: Database, engine: PolicyEngine
) -> None:
    book = await open_book(database, engine)
    await engine.grant_role("alice", "operator", "city")
    authorizer = CasbinAuthorizer(engine, approval_rules=book)
    added = await book.add_approval_rule(
        "a, city, tool:dispatch_trucks, call, hazard==true, inspector, 900s, admin"
    )
    assert added.text == HAZARD
    version = book.version
    for bad in (
        "a, city, tool:dispatch_trucks, call, hazard == true, wizard",
        "a, city, tool:dispatch_trucks, call, hazard === true, inspector",
        "a, city, tool:dispatch_trucks, call, *, inspector, soon",
        "a, city, tool:dispatch_trucks, call, *, inspector, -, admin",
    ):
        with pytest.raises(InvalidInput):
            await book.add_approval_rule(bad)
    with pytest.raises(Conflict, match="there already"):
        await book.add_approval_rule(HAZARD)
    with pytest.raises(NotFound, match="no approval rule"):
        await book.remove_approval_rule("a, city, tool:other, call, *, inspector")
    assert [r.text for r in await book.approval_rules("city")] == [HAZARD]
    assert book.version == version
    async with database.read() as session:
        assert list(await session.scalars(select(ApprovalRuleRow.line))) == [HAZARD]
    await book.remove_approval_rule(
        "a, city, tool:dispatch_trucks, call, hazard == true, inspector, 15m, admin"
    )
    assert book.version == version + 1
    assert await book.approval_rules() == []
    assert (await authorizer.authorize(dispatch({"hazard": True}))).approval is None


async def test_another_kernels_rule_change_applies_within_the_policy_bound(
    open_engine: EngineFactory, database: Database
) -> None:
    bound = 0.4
    ours = await open_engine(refresh_seconds=bound)
    theirs = await open_engine(second=True, refresh_seconds=bound)
    await ours.grant_role("alice", "operator", "city")
    our_book = await open_book(database, ours)
    their_book = await open_book(theirs._db, theirs)  # the other kernel's own writer
    authorizer = CasbinAuthorizer(ours, approval_rules=our_book)
    assert (await authorizer.authorize(dispatch({"hazard": True}))).approval is None  # cached
    await their_book.add_approval_rule(HAZARD)
    committed = time.monotonic()
    await asyncio.sleep(max(0.0, committed + bound - time.monotonic()) + 0.01)
    decision = await authorizer.authorize(dispatch({"hazard": True}))
    assert decision.approval is not None and decision.approval.rule == HAZARD
    assert our_book.version == their_book.version
