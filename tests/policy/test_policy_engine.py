"""The policy engine on a real database (SQLite and PostgreSQL) with real Casbin: seeding,
roles per object kind, tenants, deny rules, changes, validation, the cache and freshness."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.orm import Session

from kernos.kernel.errors import Conflict, InvalidInput, NotFound, StorageError
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import PolicyRuleRow, PolicyVersionRow
from kernos.kernel.syscalls import AuthRequest
from kernos.policy.authorizer import CasbinAuthorizer
from kernos.policy.cache import PolicySnapshot
from kernos.policy.engine import PolicyEngine
from kernos.policy.rules import DEFAULT_POLICY_PATH, parse_policy_text

from .conftest import EngineFactory

# (object, action) -> the roles that may do it, in the default policy.
EXPECTED = {
    ("tool:route", "call"): {"admin", "operator", "dispatcher"},
    ("model:llama", "call"): {"admin", "operator", "dispatcher"},
    ("memory:notes", "read"): {"admin", "operator", "inspector", "viewer"},
    ("memory:notes", "write"): {"admin", "operator"},
    ("agent:dispatcher", "spawn"): {"admin", "operator", "dispatcher"},
    ("agent:other", "spawn"): {"admin", "operator"},
    ("process:*", "read"): {"admin", "operator", "inspector", "viewer", "dispatcher"},
    ("process:42", "signal"): {"admin", "operator"},
    ("approval:operator", "approve"): {"admin", "operator", "inspector"},
    ("approval:inspector", "approve"): {"admin", "inspector"},
    ("approval:*", "write"): {"admin", "operator", "dispatcher"},
    ("audit:*", "read"): {"admin", "operator", "inspector", "viewer"},
    ("audit:*", "admin"): {"admin"},
    ("event:sensor.bin.fill", "write"): {"admin", "operator", "forwarder", "dispatcher"},
    ("policy:*", "read"): {"admin", "operator", "inspector", "viewer"},
    ("policy:*", "admin"): {"admin"},
    ("key:*", "admin"): {"admin"},
}
ROLES = ("admin", "operator", "inspector", "viewer", "forwarder", "dispatcher")


async def _grant_everyone(engine: PolicyEngine, tenant: str = "city") -> None:
    for role in ROLES:
        await engine.grant_role(f"{role}-person", role, tenant)


async def test_seeding_is_idempotent(open_engine: EngineFactory, database: Database) -> None:
    # Two engines with writers of their own start at once on the empty policy: one seeds.
    first, other = await asyncio.gather(open_engine(), open_engine(second=True))
    assert first.version == other.version == 1
    assert await other.list() == await first.list()
    lines = await first.list()
    assert "p, role:admin, *, *, *, allow" in [line.text for line in lines]
    again = await open_engine()  # a restart: nothing is seeded twice
    assert again.version == 1
    assert await again.list() == lines
    async with database.read() as session:
        stored = await session.scalar(select(func.count()).select_from(PolicyRuleRow))
    assert stored == len(lines)


async def test_removing_every_line_does_not_reseed(open_engine: EngineFactory) -> None:
    engine = await open_engine()
    for line in await engine.list():
        await engine.remove(line.text)
    assert await engine.list() == []
    restarted = await open_engine()
    assert await restarted.list() == []
    decision = await restarted.check("admin", "default", "tool:x", "call")
    assert not decision.allowed


@pytest.mark.parametrize(("obj", "action"), sorted(EXPECTED))
async def test_each_object_kind_and_action_by_role(
    engine: PolicyEngine, obj: str, action: str
) -> None:
    await _grant_everyone(engine)
    allowed = {
        role
        for role in ROLES
        if (await engine.check(f"{role}-person", "city", obj, action)).allowed
    }
    assert allowed == EXPECTED[(obj, action)]
    # Nobody without a role may do anything: deny by default, with the reason.
    decision = await engine.check("stranger", "city", obj, action)
    assert not decision.allowed
    assert decision.rule == "deny-by-default: no rule matched"


async def test_the_decision_names_the_rule(engine: PolicyEngine) -> None:
    await engine.grant_role("alice", "operator", "city")
    decision = await engine.check("alice", "city", "tool:route", "call")
    assert decision.allowed
    assert decision.rule == "p, role:operator, *, tool:*, call, allow"


async def test_roles_hold_only_in_their_tenant(engine: PolicyEngine) -> None:
    await engine.grant_role("alice", "admin", "city")
    await engine.grant_role("bob", "viewer", "*")
    assert (await engine.check("alice", "city", "audit:*", "admin")).allowed
    assert not (await engine.check("alice", "depot", "audit:*", "read")).allowed
    # A role given for every tenant holds in each.
    assert (await engine.check("bob", "depot", "process:*", "read")).allowed
    assert (await engine.check("bob", "city", "process:*", "read")).allowed
    # A rule for one tenant stays there.
    await engine.add("p, carol, depot, tool:route, call, allow")
    assert (await engine.check("carol", "depot", "tool:route", "call")).allowed
    assert not (await engine.check("carol", "city", "tool:route", "call")).allowed
    assert [line.text for line in await engine.list("depot")].count(
        "p, carol, depot, tool:route, call, allow"
    ) == 1
    assert all(line.tenant in ("city", "*") for line in await engine.list("city"))


async def test_a_principal_named_like_a_role_does_not_hold_it(engine: PolicyEngine) -> None:
    # Casbin links every name to itself; roles are role:NAME, so "viewer" is just a name.
    assert not (await engine.check("viewer", "city", "process:*", "read")).allowed
    assert not (await engine.check("admin", "city", "tool:x", "call")).allowed
    assert (await engine.check("admin", "default", "tool:x", "call")).allowed  # the local admin


async def test_deny_wins_over_allow(engine: PolicyEngine) -> None:
    await engine.grant_role("alice", "operator", "city")
    await engine.add("p, alice, city, tool:dispatch_trucks, call, deny")
    denied = await engine.check("alice", "city", "tool:dispatch_trucks", "call")
    assert not denied.allowed
    assert denied.rule == "p, alice, city, tool:dispatch_trucks, call, deny"
    assert (await engine.check("alice", "city", "tool:route", "call")).allowed
    # A deny for a role reaches every member, whatever else allows them.
    await engine.add("p, role:operator, *, tool:shutdown*, call, deny")
    await engine.add("p, alice, city, tool:shutdown-all, call, allow")
    assert not (await engine.check("alice", "city", "tool:shutdown-all", "call")).allowed


async def test_changes_apply_at_once_and_clear_the_cache(engine: PolicyEngine) -> None:
    assert not (await engine.check("alice", "city", "tool:route", "call")).allowed  # cached
    line = await engine.add("g, alice, operator, city")
    assert line.text == "g, alice, role:operator, city"
    assert (await engine.check("alice", "city", "tool:route", "call")).allowed
    await engine.remove("g, alice, role:operator, city")  # canonical or bare, the same line
    assert not (await engine.check("alice", "city", "tool:route", "call")).allowed
    # A new role: defined by its rules, then assignable.
    with pytest.raises(InvalidInput, match="unknown role 'driver'"):
        await engine.add("g, alice, driver, city")
    await engine.add("p, role:driver, *, tool:drive, call, allow")
    assert "driver" in engine.roles
    await engine.add("g, alice, driver, city")
    assert (await engine.check("alice", "city", "tool:drive", "call")).allowed


async def test_a_failed_change_leaves_the_policy_in_force(
    engine: PolicyEngine, database: Database
) -> None:
    await engine.grant_role("alice", "operator", "city")
    before_lines = await engine.list()
    before_version = engine.version
    assert (await engine.check("alice", "city", "tool:route", "call")).allowed
    failures = [
        (engine.add("p, alice, city, tool:route"), InvalidInput, "5 fields"),
        (engine.add("p, alice, city, tool:route, call, perhaps"), InvalidInput, "effect"),
        (engine.add("g, alice, superuser, city"), InvalidInput, "unknown role 'superuser'"),
        (engine.add("p, alice, city, tool:route, fly, allow"), InvalidInput, "unknown action"),
        (engine.add("p, alice, city, disk:/, read, allow"), InvalidInput, "unknown object kind"),
        (engine.add("g, alice, operator, city"), Conflict, "already has"),
        (engine.remove("p, nobody, city, tool:x, call, allow"), NotFound, "no line"),
    ]
    for attempt, error, message in failures:
        with pytest.raises(error, match=message):
            await attempt
    assert engine.version == before_version
    assert await engine.list() == before_lines
    assert (await engine.check("alice", "city", "tool:route", "call")).allowed
    async with database.read() as session:
        stored = await session.scalar(select(func.count()).select_from(PolicyRuleRow))
        version = await session.scalar(select(PolicyVersionRow.version))
    assert stored == len(before_lines)
    assert version == before_version


async def test_grant_role_is_idempotent(engine: PolicyEngine) -> None:
    await engine.grant_role("alice", "operator", "city")
    version = engine.version
    await engine.grant_role("alice", "operator", "city")
    assert engine.version == version
    with pytest.raises(InvalidInput, match="unknown role"):
        await engine.grant_role("alice", "root", "city")


async def test_unknown_request_vocabulary_is_invalid_input(engine: PolicyEngine) -> None:
    with pytest.raises(InvalidInput, match="unknown action 'fly'"):
        await engine.check("alice", "city", "tool:x", "fly")
    with pytest.raises(InvalidInput, match="unknown object 'disk:x'"):
        await engine.check("alice", "city", "disk:x", "read")


async def test_another_engines_change_is_in_force_within_the_bound(
    open_engine: EngineFactory,
) -> None:
    bound = 0.4
    ours = await open_engine(refresh_seconds=bound)
    theirs = await open_engine(second=True, refresh_seconds=bound)
    assert not (await ours.check("alice", "city", "tool:route", "call")).allowed  # now cached
    await theirs.add("g, alice, operator, city")
    committed = time.monotonic()  # the commit happened before add returned
    await asyncio.sleep(max(0.0, committed + bound - time.monotonic()) + 0.01)
    decision = await ours.check("alice", "city", "tool:route", "call")
    assert decision.allowed, decision.rule
    assert ours.version == theirs.version
    # And back: our removal reaches them within the bound too.
    await ours.remove("g, alice, operator, city")
    removed = time.monotonic()
    await asyncio.sleep(max(0.0, removed + bound - time.monotonic()) + 0.01)
    assert not (await theirs.check("alice", "city", "tool:route", "call")).allowed


async def test_cached_decisions_do_not_read_the_database(open_engine: EngineFactory) -> None:
    engine = await open_engine(refresh_seconds=60.0)
    statements: list[str] = []
    store_engine = engine._store._engine  # count what the policy's own connections run

    @event.listens_for(store_engine, "before_cursor_execute")
    def _count(*args: object) -> None:
        statements.append(str(args[2]))

    for _ in range(10_000):
        await engine.check("admin", "default", "tool:x", "call")
    assert statements == []


async def test_concurrent_changes_through_two_engines_all_land(
    open_engine: EngineFactory,
) -> None:
    ours = await open_engine(refresh_seconds=0.2)
    theirs = await open_engine(second=True, refresh_seconds=0.2)
    await asyncio.gather(
        *(ours.grant_role(f"a{i}", "viewer", "city") for i in range(10)),
        *(theirs.grant_role(f"b{i}", "viewer", "city") for i in range(10)),
    )
    # The later engine to change reloaded; the other catches up within its bound.
    await asyncio.sleep(0.25)
    for engine in (ours, theirs):
        granted = {line.subject for line in await engine.list("city") if line.ptype == "g"}
        assert granted == {f"a{i}" for i in range(10)} | {f"b{i}" for i in range(10)}
        assert engine.version == 21


async def test_a_stored_line_that_does_not_load_is_rejected(
    open_engine: EngineFactory, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await open_engine(refresh_seconds=0.2)
    await engine.grant_role("alice", "operator", "city")
    version = engine.version

    def corrupt(session: Session) -> None:  # another program writing around the engine
        session.execute(insert(PolicyRuleRow).values(ptype="p", v0="mallory", v1="city"))
        session.execute(update(PolicyVersionRow).values(version=PolicyVersionRow.version + 1))

    await database.write(corrupt)
    await asyncio.sleep(0.25)  # past the bound: the next decision waits for a version check
    with caplog.at_level(logging.ERROR, logger="kernos.policy.engine"):
        assert (await engine.check("alice", "city", "tool:route", "call")).allowed
    assert "stored policy rejected" in caplog.text
    assert "5 fields" in caplog.text
    assert engine.version == version  # the previous policy stays in force
    assert "mallory" not in {line.subject for line in await engine.list()}

    def repair(session: Session) -> None:  # drop the bad line and alice's role
        session.execute(delete(PolicyRuleRow).where(PolicyRuleRow.v0.in_(["mallory", "alice"])))
        session.execute(update(PolicyVersionRow).values(version=PolicyVersionRow.version + 1))

    await database.write(repair)
    await asyncio.sleep(0.25)
    assert not (await engine.check("alice", "city", "tool:route", "call")).allowed
    assert engine.version == version + 2


def test_a_full_cache_starts_over_and_stays_exact() -> None:
    lines = parse_policy_text(DEFAULT_POLICY_PATH.read_text(), source="default")
    small = PolicySnapshot(lines, version=1, max_cached=3)
    fresh = PolicySnapshot(lines, version=1)
    requests = [
        (name, tenant, obj, "call")
        for name in ("admin", "alice")
        for tenant in ("default", "city")
        for obj in ("tool:a", "model:b")
    ]
    for _ in range(3):
        for request in requests:
            assert small.decide(*request) == fresh.decide(*request)
            assert small.cached <= 3


async def test_an_unreadable_policy_fails_closed(
    open_engine: EngineFactory, database: Database
) -> None:
    engine = await open_engine(refresh_seconds=0.05)
    authorizer = CasbinAuthorizer(engine)
    admin = Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)
    ask = AuthRequest(principal=admin, tenant="default", obj="audit:*", action="read")
    assert (await authorizer.authorize(ask)).allowed

    def break_version(session: Session) -> None:
        session.execute(delete(PolicyVersionRow))

    await database.write(break_version)
    await asyncio.sleep(0.1)  # past the bound: the next decision must read the version
    with pytest.raises(StorageError, match="policy_version row is missing"):
        await engine.check("admin", "default", "audit:*", "read")
    decision = await authorizer.authorize(ask)
    assert not decision.allowed
    assert decision.rule.startswith("error: the policy_version row is missing")
