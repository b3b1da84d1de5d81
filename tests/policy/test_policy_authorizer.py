"""``CasbinAuthorizer``: owner ∩ agent grants, child ≤ parent, manifests, operator requests."""

from __future__ import annotations

import pytest

from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.syscalls import Actor, AuthRequest
from kernos.policy.authorizer import CasbinAuthorizer
from kernos.policy.engine import PolicyEngine

MANIFESTS: dict[str, set[tuple[str, str]]] = {
    "router": {("tool:route", "call"), ("model:*", "call"), ("approval:*", "write")},
    "helper": {("tool:route", "call"), ("tool:lookup", "call")},
}


def person(name: str, tenant: str = "city") -> Principal:
    return Principal(tenant=tenant, name=name, kind=PrincipalKind.PERSON)


def request(
    owner: Principal,
    obj: str,
    action: str = "call",
    *,
    agent: str | None = "router",
    ancestors: tuple[Actor, ...] = (),
) -> AuthRequest:
    return AuthRequest(
        principal=owner,
        tenant="city",
        obj=obj,
        action=action,
        pid=7 if agent else None,
        agent=agent,
        ancestors=ancestors,
    )


@pytest.fixture
async def authorizer(engine: PolicyEngine) -> CasbinAuthorizer:
    await engine.grant_role("alice", "operator", "city")
    await engine.grant_role("vic", "viewer", "city")
    await engine.grant_role("ann", "admin", "city")
    return CasbinAuthorizer(engine, manifest=MANIFESTS.get)


async def test_an_agent_without_policy_lines_is_held_to_its_manifest(
    authorizer: CasbinAuthorizer,
) -> None:
    allowed = await authorizer.authorize(request(person("alice"), "tool:route"))
    assert allowed.allowed
    assert allowed.rule == (
        "alice: p, role:operator, *, tool:*, call, allow; agent:router: manifest tool:route call"
    )
    assert (await authorizer.authorize(request(person("alice"), "model:llama"))).allowed
    # The owner may call any tool; the agent declared only some.
    denied = await authorizer.authorize(request(person("alice"), "tool:dispatch_trucks"))
    assert not denied.allowed
    assert denied.rule == "agent:router: deny-by-default: not in the agent's manifest"
    # An admin owner does not widen the agent either.
    assert not (await authorizer.authorize(request(person("ann"), "tool:dispatch_trucks"))).allowed
    # An agent the kernel does not know has no grants at all.
    unknown = await authorizer.authorize(request(person("alice"), "tool:route", agent="ghost"))
    assert not unknown.allowed
    assert "agent:ghost: deny-by-default: no policy line and no manifest" in unknown.rule


async def test_policy_lines_about_an_agent_replace_its_manifest(
    authorizer: CasbinAuthorizer, engine: PolicyEngine
) -> None:
    await engine.add("p, agent:router, depot, tool:dispatch_trucks, call, allow")
    # Mentioned by the policy (in another tenant): the manifest no longer applies here.
    denied = await authorizer.authorize(request(person("alice"), "tool:route"))
    assert not denied.allowed
    assert denied.rule == "agent:router: deny-by-default: no rule matched"
    await engine.add("p, agent:router, *, tool:*, call, allow")
    await engine.add("p, agent:router, city, tool:dispatch_trucks, call, deny")
    assert (await authorizer.authorize(request(person("alice"), "tool:route"))).allowed
    denied = await authorizer.authorize(request(person("alice"), "tool:dispatch_trucks"))
    assert denied.rule == "agent:router: p, agent:router, city, tool:dispatch_trucks, call, deny"


async def test_the_owner_must_be_allowed_too(authorizer: CasbinAuthorizer) -> None:
    # A process started by a trigger runs as the trigger's creator: a viewer stays a viewer.
    denied = await authorizer.authorize(request(person("vic"), "tool:route"))
    assert not denied.allowed
    assert denied.rule == "vic: deny-by-default: no rule matched"
    stranger = await authorizer.authorize(request(person("eve"), "model:llama"))
    assert stranger.rule == "eve: deny-by-default: no rule matched"


async def test_a_child_gets_at_most_its_parents_grants(authorizer: CasbinAuthorizer) -> None:
    alice, vic, ann = person("alice"), person("vic"), person("ann")
    # Both the child's owner and agent may route; a viewer's process spawned it.
    by_viewer = (Actor(owner=vic, agent="helper"),)
    denied = await authorizer.authorize(request(alice, "tool:route", ancestors=by_viewer))
    assert not denied.allowed
    assert denied.rule == "parent owner vic: deny-by-default: no rule matched"
    # The parent's agent did not declare the tool the child's agent may call.
    chain = (Actor(owner=ann, agent="router"),)
    denied = await authorizer.authorize(
        request(alice, "tool:lookup", agent="helper", ancestors=chain)
    )
    assert denied.rule == "parent agent:router: deny-by-default: not in the agent's manifest"
    # Every ancestor counts, nearest first.
    chain = (Actor(owner=ann, agent="helper"), Actor(owner=alice, agent="router"))
    denied = await authorizer.authorize(
        request(alice, "tool:lookup", agent="helper", ancestors=chain)
    )
    assert denied.rule == "ancestor 2 agent:router: deny-by-default: not in the agent's manifest"
    chain = (Actor(owner=ann, agent="helper"), Actor(owner=alice, agent="helper"))
    assert (
        await authorizer.authorize(request(alice, "tool:lookup", agent="helper", ancestors=chain))
    ).allowed
    # An ancestor from another tenant cannot lend its grants.
    foreign = (Actor(owner=person("ann", tenant="depot"), agent="helper"),)
    denied = await authorizer.authorize(request(alice, "tool:route", ancestors=foreign))
    assert denied.rule == "parent owner depot/ann: not of tenant city"


async def test_requests_without_a_process_check_the_principal_only(
    authorizer: CasbinAuthorizer,
) -> None:
    spawn = await authorizer.authorize(
        request(person("alice"), "agent:router", "spawn", agent=None)
    )
    assert spawn.allowed
    assert spawn.rule == "p, role:operator, *, agent:*, spawn, allow"
    assert (
        await authorizer.authorize(request(person("vic"), "audit:*", "read", agent=None))
    ).allowed
    signal = await authorizer.authorize(request(person("vic"), "process:9", "signal", agent=None))
    assert not signal.allowed
    assert signal.rule == "vic: deny-by-default: no rule matched"


async def test_a_principal_acts_only_in_its_own_tenant(authorizer: CasbinAuthorizer) -> None:
    outsider = person("alice", tenant="depot")  # same name, other tenant
    denied = await authorizer.authorize(request(outsider, "tool:route", agent=None))
    assert not denied.allowed
    assert "acts only in its own tenant" in denied.rule


async def test_an_invalid_request_fails_closed(authorizer: CasbinAuthorizer) -> None:
    decision = await authorizer.authorize(request(person("alice"), "tool:route", "fly"))
    assert not decision.allowed
    assert decision.rule.startswith("error: unknown action 'fly'")
