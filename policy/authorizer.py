"""``CasbinAuthorizer``: the kernel's ``Authorizer`` on the policy engine.

A process acts with the intersection of grants: its owner's, its agent's, and those of every
process above it (each ancestor's owner and agent), so a child never gets more than its
parent. An agent the policy says nothing about (no line names ``agent:NAME``) is held to its
manifest — what it declared (its tools, the model, ...) — so agents are least-privilege by
default. A request without a process (an operator acting through the API or CLI) checks the
principal alone. Every subject is decided with the same policy snapshot.

An allowed syscall of a process is then looked up in the approval rules (``ApprovalRuleBook``,
cached per tenant, object and action and kept at least as new as the policy snapshot): the
first rule whose argument condition holds for the call's arguments puts its approval
requirement on the decision, and the kernel's approval stage asks a human before the call runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Set as AbstractSet

from kernos.kernel.errors import KernosError
from kernos.kernel.syscalls import Authorizer, AuthRequest, Decision
from kernos.policy.approval_book import ApprovalRuleBook
from kernos.policy.cache import PolicySnapshot
from kernos.policy.engine import PolicyEngine
from kernos.policy.rules import AGENT_PREFIX, validate_request

log = logging.getLogger(__name__)

Manifest = Callable[[str], "AbstractSet[tuple[str, str]] | None"]
"""``manifest(agent)``: the (object pattern, action) pairs an agent declared, or ``None`` for
an agent the kernel does not know. Patterns may end in ``*`` (``model:*``)."""


def _matches(obj: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return obj.startswith(pattern[:-1])
    return obj == pattern


class CasbinAuthorizer(Authorizer):
    """Authorizes syscalls and operator actions with the policy engine (deny by default)."""

    def __init__(
        self,
        engine: PolicyEngine,
        *,
        manifest: Manifest | None = None,
        approval_rules: ApprovalRuleBook | None = None,
    ) -> None:
        """``manifest`` gives the grants of agents the policy does not mention (none: deny);
        ``approval_rules`` say which allowed process syscalls need a human first."""
        self.engine = engine
        self._manifest = manifest
        self.approval_rules = approval_rules

    async def authorize(self, request: AuthRequest) -> Decision:
        """Allowed only if every subject involved is allowed; the rule names who decided.

        An allowed process syscall carries the approval its first matching approval rule
        requires (``Decision.approval``).
        """
        try:
            snapshot = await self.engine.snapshot()
            decision = self._decide(snapshot, request)
            if decision.allowed and request.pid is not None and self.approval_rules is not None:
                needed = await self.approval_rules.requirement(request, version=snapshot.version)
                if needed is not None:
                    decision = Decision(allowed=True, rule=decision.rule, approval=needed)
            return decision
        except KernosError as exc:  # invalid request, policy unreadable: fail closed
            log.warning("authorization failed closed: %s", exc)
            return Decision(allowed=False, rule=f"error: {exc.message}")

    def _decide(self, snapshot: PolicySnapshot, request: AuthRequest) -> Decision:
        tenant, obj, action = request.tenant, request.obj, request.action
        principal = request.principal
        if principal.tenant != tenant:
            return Decision(
                allowed=False,
                rule=f"{principal.subject}: a principal acts only in its own tenant, not {tenant}",
            )
        owner = snapshot.decide(principal.name, tenant, obj, action)
        if not owner.allowed:
            return Decision(allowed=False, rule=f"{principal.name}: {owner.rule}")
        if request.agent is None:
            return owner
        agent = self._agent(snapshot, request.agent, tenant, obj, action)
        if not agent.allowed:
            return agent
        for depth, ancestor in enumerate(request.ancestors, start=1):
            who = "parent" if depth == 1 else f"ancestor {depth}"
            if ancestor.owner.tenant != tenant:
                return Decision(
                    allowed=False,
                    rule=f"{who} owner {ancestor.owner.subject}: not of tenant {tenant}",
                )
            above = snapshot.decide(ancestor.owner.name, tenant, obj, action)
            if not above.allowed:
                return Decision(
                    allowed=False, rule=f"{who} owner {ancestor.owner.name}: {above.rule}"
                )
            above = self._agent(snapshot, ancestor.agent, tenant, obj, action)
            if not above.allowed:
                return Decision(allowed=False, rule=f"{who} {above.rule}")
        return Decision(allowed=True, rule=f"{principal.name}: {owner.rule}; {agent.rule}")

    def _agent(
        self, snapshot: PolicySnapshot, agent: str, tenant: str, obj: str, action: str
    ) -> Decision:
        subject = AGENT_PREFIX + agent
        if subject in snapshot.agents:
            decision = snapshot.decide(subject, tenant, obj, action)
            return Decision(allowed=decision.allowed, rule=f"{subject}: {decision.rule}")
        validate_request(obj, action)
        grants = self._manifest(agent) if self._manifest is not None else None
        if grants is None:
            return Decision(
                allowed=False,
                rule=f"{subject}: deny-by-default: no policy line and no manifest for the agent",
            )
        for pattern, granted in grants:
            if granted == action and _matches(obj, pattern):
                return Decision(allowed=True, rule=f"{subject}: manifest {pattern} {granted}")
        return Decision(
            allowed=False, rule=f"{subject}: deny-by-default: not in the agent's manifest"
        )
