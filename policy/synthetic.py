"""A synthetic RBAC-with-domains policy of realistic size, and random requests against it.

Shared by the policy tests (the differential test against a plain Casbin enforcer) and
``bench/policy.py``: 410 lines for 5 tenants, 50 tools and 200 users — the size at which
FIELD-NOTES measured pycasbin at about 1.8 ms per decision. Deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from kernos.policy.rules import ACTIONS, PolicyLine, parse_line

ROLE_RULES = (
    "p, role:admin, *, *, *, allow",
    "p, role:operator, *, agent:*, spawn, allow",
    "p, role:operator, *, process:*, signal, allow",
    "p, role:operator, *, tool:*, call, allow",
    "p, role:operator, *, model:*, call, allow",
    "p, role:operator, *, *, read, allow",
    "p, role:operator, *, approval:operator, approve, allow",
    "p, role:inspector, *, *, read, allow",
    "p, role:inspector, *, approval:*, approve, allow",
    "p, role:viewer, *, *, read, allow",
)
ROLES = ("admin", "operator", "inspector", "viewer")
OTHER_OBJECTS = (
    "model:llama",
    "memory:notes",
    "agent:dispatcher",
    "process:*",
    "process:17",
    "approval:operator",
    "approval:inspector",
    "audit:*",
    "event:sensor.bin.fill",
)


@dataclass(frozen=True, slots=True)
class SyntheticPolicy:
    """The generated lines and the names they use."""

    lines: tuple[PolicyLine, ...]
    tenants: tuple[str, ...]
    users: tuple[str, ...]
    tools: tuple[str, ...]
    agents: tuple[str, ...]

    @property
    def csv(self) -> str:
        """The lines as a Casbin policy file."""
        return "".join(f"{line.text}\n" for line in self.lines)


def generate_policy(
    *, tenants: int = 5, tools: int = 50, users: int = 200, size: int = 410, seed: int = 7
) -> SyntheticPolicy:
    """``size`` lines: the role rules, one role assignment per user, and per-tenant tool
    rules (a fifth of them denials) for users, roles and agents."""
    rng = random.Random(seed)  # noqa: S311  # synthetic test data, not secrets
    tenant_names = tuple(f"tenant{i}" for i in range(tenants))
    user_names = tuple(f"user{i}" for i in range(users))
    tool_names = tuple(f"tool:tool{i}" for i in range(tools))
    agent_names = tuple(f"agent:agent{i}" for i in range(5))
    texts = list(ROLE_RULES)
    for user in user_names:
        texts.append(f"g, {user}, role:{rng.choice(ROLES)}, {rng.choice(tenant_names)}")
    seen = set(texts)
    while len(texts) < size:
        subject = rng.choice((*user_names, *user_names, *agent_names, "role:viewer"))
        tenant = rng.choice((*tenant_names, "*")) if subject.startswith("agent:") else None
        tenant = tenant or rng.choice(tenant_names)
        effect = "deny" if rng.random() < 0.2 else "allow"
        text = f"p, {subject}, {tenant}, {rng.choice(tool_names)}, call, {effect}"
        if text not in seen:
            seen.add(text)
            texts.append(text)
    parsed = [parse_line(text) for text in texts]
    rules = [line for line in parsed if line.ptype == "p"]
    groups = [line for line in parsed if line.ptype == "g"]
    return SyntheticPolicy(
        lines=tuple(rules + groups),
        tenants=tenant_names,
        users=user_names,
        tools=tool_names,
        agents=agent_names,
    )


def request_pool(
    policy: SyntheticPolicy, count: int, *, seed: int = 11
) -> list[tuple[str, str, str, str]]:
    """``count`` distinct random requests (subject, tenant, object, action) over the names
    the policy uses, plus some it does not (an unknown user, tenant, tool). Most ask about a
    tenant where the subject has a line, so allows, denials and deny rules all occur."""
    rng = random.Random(seed)  # noqa: S311  # synthetic test data, not secrets
    subjects = (*policy.users, *policy.agents, "role:operator", "nobody")
    tenants = (*policy.tenants, "elsewhere")
    home: dict[str, list[str]] = {}
    for line in policy.lines:
        if line.tenant != "*":
            home.setdefault(line.subject, []).append(line.tenant)
    objects = (*policy.tools, *policy.tools, *OTHER_OBJECTS, "tool:unknown")
    actions = tuple(sorted(ACTIONS))
    pool: dict[tuple[str, str, str, str], None] = {}
    rules = [line for line in policy.lines if line.ptype == "p" and "*" not in line.fields[2]]
    while len(pool) < count:
        if rng.random() < 0.3:  # exactly what some rule is about (deny rules included)
            subject, tenant, obj, action, _ = rng.choice(rules).fields
            tenant = rng.choice(tenants) if tenant == "*" else tenant
            pool[(subject, tenant, obj, action)] = None
            continue
        subject = rng.choice(subjects)
        own = home.get(subject)
        tenant = rng.choice(own) if own and rng.random() < 0.8 else rng.choice(tenants)
        obj = rng.choice(objects)
        action = "call" if obj.startswith("tool:") and rng.random() < 0.7 else rng.choice(actions)
        pool[(subject, tenant, obj, action)] = None
    return list(pool)
