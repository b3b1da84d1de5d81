"""The city scenario on a kernel: the simulated city, its fleet, board and planner, installed
for one tenant, and the simulated inspector that answers hazardous pickups in the demo.

:func:`install` binds a :class:`CityScenario` to a started kernel and sets up what the
dispatcher needs through the policy API: the service principal ``dispatcher`` (role
``dispatcher``, allowed to spawn the agent), the principal ``inspector`` (role ``inspector``),
the approval rule :data:`~kernos.plugins.city.HAZARD_RULE` (deadline and escalation chain
included), the hazard classifier in the model registry, and the trigger that spawns the
dispatcher on ``city.day``.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kernos.kernel.errors import Conflict, KernosError, NotFound
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.plugins.city import AGENT, DAY_TOPIC, DISPATCHER, HAZARD_RULE, INSPECTOR

if TYPE_CHECKING:
    from datetime import datetime

    from kernos.kernel.approvals import ApprovalInfo
    from kernos.kernel.clock import Clock
    from kernos.kernel.events import Event, EventBus, Trigger
    from kernos.kernel.kernel import Kernel
    from kernos.plugins.city.board import BinBoard
    from kernos.plugins.city.fleet import Fleet
    from kernos.plugins.city.planner import Planner

_SCENARIOS: weakref.WeakKeyDictionary[Any, dict[str, CityScenario]] = weakref.WeakKeyDictionary()


@dataclass(eq=False, kw_only=True)
class CityScenario:
    """One city bound to one tenant of one kernel."""

    tenant: str
    board: BinBoard
    planner: Planner
    fleet: Fleet
    bus: EventBus
    clock: Clock
    epoch: datetime
    """Kernel-clock time of 00:00 on simulation day 0."""
    shift_start_h: float = 7.0

    def hour_of(self, day: int) -> float:
        """The kernel clock's hour within ``day`` (at least shift start, at most 24)."""
        elapsed = (self.clock.now() - self.epoch).total_seconds() / 3600.0 - day * 24.0
        return min(max(elapsed, self.shift_start_h), 24.0)


def scenario_for(processes: Any, tenant: str) -> CityScenario:
    """The scenario installed on the kernel whose process table is ``processes``, for
    ``tenant``; ``NotFound`` when there is none."""
    found = _SCENARIOS.get(processes, {}).get(tenant)
    if found is None:
        raise NotFound(
            f"no city scenario runs in tenant {tenant!r} on this kernel "
            "(kernos demo waste installs one)"
        )
    return found


def scenario_here() -> CityScenario:
    """The scenario of the process whose governed tool is running."""
    from kernos.kernel.governed import current_process_context

    context = current_process_context()
    return scenario_for(context.processes, context.process.tenant)


def day_trigger(tenant: str) -> Trigger:
    """Spawn the dispatcher, as ``dispatcher``, for every ``city.day`` event of ``tenant``."""
    from kernos.kernel.events import Trigger

    def day_input(event: Event) -> dict[str, Any]:
        return {"day": int(event.data["day"])}

    return Trigger(
        name=f"city-day-{tenant}",
        pattern=DAY_TOPIC,
        agent=AGENT,
        tenant=tenant,
        principal=Principal(tenant=tenant, name=DISPATCHER, kind=PrincipalKind.SERVICE),
        input_map=day_input,
    )


async def install(kernel: Kernel, scenario: CityScenario, *, by: Principal) -> None:
    """Bind ``scenario`` to ``kernel`` and set up its principals, policy, approval rule and
    hazard classifier (idempotent); ``by`` is who the audit names for the changes."""
    from kernos.plugins.hazard.plugin import ensure_model
    from kernos.policy.service import policy_services

    tenant = scenario.tenant
    for name in (DISPATCHER, INSPECTOR):
        kind = PrincipalKind.SERVICE if name == DISPATCHER else PrincipalKind.PERSON
        await kernel.identity.ensure_principal(tenant, name, kind=kind)
    services = policy_services(kernel)
    await services.engine.grant_role(DISPATCHER, "dispatcher", tenant)
    await services.engine.grant_role(INSPECTOR, "inspector", tenant)
    for line in (
        f"p, role:dispatcher, {tenant}, agent:{AGENT}, spawn, allow",
        HAZARD_RULE.format(tenant=tenant),
    ):
        try:
            if line.startswith("a,"):
                await services.change_approval_rule(by, line, add=True)
            else:
                await services.change(by, line, add=True)
        except Conflict:
            pass  # installed before
    await ensure_model(kernel, by=by)
    _SCENARIOS.setdefault(kernel.processes, {})[tenant] = scenario
    with contextlib.suppress(Conflict):  # installed before
        kernel.events.add_trigger(day_trigger(tenant))


def uninstall(kernel: Kernel, tenant: str | None = None) -> None:
    """Unbind the scenario of ``tenant`` (every tenant's when ``None``) from ``kernel``."""
    try:
        processes = kernel.processes
    except KernosError:
        return  # not running: nothing is bound
    if tenant is None:
        _SCENARIOS.pop(processes, None)
    else:
        _SCENARIOS.get(processes, {}).pop(tenant, None)


@dataclass(kw_only=True)
class SimulatedInspector:
    """The demo's inspector: approves a hazardous pickup when the classifier's probability for
    every bin is at least ``threshold``, denies it otherwise, and answers ``delay_min``
    minutes (kernel clock) after being asked."""

    principal: Principal
    threshold: float = 0.9
    delay_min: float = 10.0
    decisions: list[tuple[str, bool, float]] = field(default_factory=list)
    """``(approval id, approved, minutes to decision on the kernel clock)`` per answer."""

    @property
    def rule(self) -> str:
        """The rule in words (the demo prints it)."""
        return (
            f"the inspector approves a hazardous pickup when the classifier's probability is "
            f">= {self.threshold:g}, denies it otherwise, and answers {self.delay_min:g} "
            "minutes (simulated) after being asked"
        )

    def judge(self, approval: ApprovalInfo) -> bool:
        """The decision for ``approval`` (from the evidence in the proposed call)."""
        proposed = approval.proposed if isinstance(approval.proposed, dict) else {}
        args = proposed.get("args") or {}
        evidence = [float(p) for p in args.get("hazard_p") or []]
        return bool(evidence) and min(evidence) >= self.threshold

    async def answer(self, kernel: Kernel, approval: ApprovalInfo) -> bool:
        """Decide ``approval`` now as this inspector; returns the decision."""
        approved = self.judge(approval)
        comment = "probability meets the rule" if approved else "evidence too weak"
        await kernel.processes.decide(
            approval.id, approved=approved, by=self.principal, comment=comment
        )
        minutes = (kernel.clock.now() - approval.created_at).total_seconds() / 60.0
        self.decisions.append((approval.id, approved, minutes))
        return approved


__all__ = [
    "CityScenario",
    "SimulatedInspector",
    "day_trigger",
    "install",
    "scenario_for",
    "scenario_here",
    "uninstall",
]
