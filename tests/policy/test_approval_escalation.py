"""Approval rules in a real kernel (SQLite and PostgreSQL): a tool that needs an inspector only
when its arguments say so, deadlines on a simulated clock, escalation, expiry and restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypedDict

import pytest
from langchain_core.tools import ToolException
from sqlalchemy import select

from kernos.kernel.approvals import ApprovalInfo
from kernos.kernel.catalog import AgentBuild, AgentSpec, ToolSpec
from kernos.kernel.clock import SimulatedClock
from kernos.kernel.errors import Conflict, InvalidInput, PolicyDenied
from kernos.kernel.events import Event
from kernos.kernel.governed import ask_human
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import BUILTIN_PLUGINS, PluginManager
from kernos.kernel.processes import SETTLED, ProcessInfo, ProcessState
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import AuditRow
from kernos.policy.service import policy_services

ADMIN = Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)
OTTO = Principal(tenant="default", name="otto", kind=PrincipalKind.PERSON)
INES = Principal(tenant="default", name="ines", kind=PrincipalKind.PERSON)
RULE = "a, default, tool:dispatch_trucks, call, hazard == true, inspector, 15m, admin"
STEP = 15 * 60
WAIT = 30
EFFECTS: list[str] = []
# The built-in city plugin has a dispatch_trucks of its own: these tests bring theirs.
BUILTINS = tuple(b for b in BUILTIN_PLUGINS if b.module != "kernos.plugins.city.plugin")


def dispatch_trucks(hazard: bool) -> str:
    EFFECTS.append(f"dispatch hazard={hazard}")
    return "dispatched"


class State(TypedDict, total=False):
    hazard: bool
    result: Any
    depot: Any


def build_dispatcher(build: AgentBuild) -> Any:
    """Calls the tool once; the kernel's error (a denial) fails the process."""
    from langgraph.graph import END, START, StateGraph

    tool = build.tools[0]
    tool.handle_tool_error = False

    async def act(state: State) -> State:
        try:
            return {"result": await tool.ainvoke({"hazard": state["hazard"]})}
        except ToolException as exc:
            raise (exc.__cause__ or exc) from None

    graph = StateGraph(State)
    graph.add_node("act", act)
    graph.add_edge(START, "act")
    graph.add_edge("act", END)
    return graph.compile()


def build_then_ask(build: AgentBuild) -> Any:
    """A tool call the policy wants approved, then a question, in one node."""
    from langgraph.graph import END, START, StateGraph

    tool = build.tools[0]

    async def act(state: State) -> State:
        result = await tool.ainvoke({"hazard": True})
        depot = await ask_human("Which depot?")
        return {"result": result, "depot": depot["value"]}

    graph = StateGraph(State)
    graph.add_node("act", act)
    graph.add_edge(START, "act")
    graph.add_edge("act", END)
    return graph.compile()


class Agents:
    @hookimpl
    def register_tools(self, register: Any) -> None:
        register(ToolSpec(name="dispatch_trucks", description="Send trucks.", func=dispatch_trucks))

    @hookimpl
    def register_agents(self, register: Any) -> None:
        tools = ("dispatch_trucks",)
        register(
            AgentSpec(name="dispatcher", description="D.", build=build_dispatcher, tools=tools)
        )
        register(AgentSpec(name="then-ask", description="T.", build=build_then_ask, tools=tools))


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)


@pytest.fixture(autouse=True)
def _clear_effects() -> None:
    EFFECTS.clear()


Start = Callable[[], Awaitable[Kernel]]


@pytest.fixture
async def start(kernos_settings: Settings) -> AsyncIterator[Start]:
    """Start kernels on the test's database, all on one simulated clock (restarts share it)."""
    clock = SimulatedClock()
    started: list[Kernel] = []

    async def make() -> Kernel:
        plugins = PluginManager(entry_points=False, builtins=BUILTINS)
        plugins.add(Agents(), name="test-agents")
        kernel = Kernel(kernos_settings, plugins=plugins, clock=clock)
        await kernel.start()
        started.append(kernel)
        return kernel

    yield make
    for kernel in started:
        if kernel.running:
            await kernel.stop()


async def ready(kernel: Kernel) -> Kernel:
    engine = policy_services(kernel).engine
    await engine.grant_role("otto", "operator", "default")
    await engine.grant_role("ines", "inspector", "default")
    return kernel


async def waiting(kernel: Kernel, info: ProcessInfo) -> ApprovalInfo:
    settled = await kernel.processes.wait(info.pid, timeout=WAIT, until=SETTLED)
    assert settled.state is ProcessState.WAITING, settled.error
    (approval,) = await kernel.processes.approvals()
    return approval


async def audited(kernel: Kernel, event: str) -> list[AuditRow]:
    async with kernel.db.read() as session:
        return list(await session.scalars(select(AuditRow).where(AuditRow.event == event)))


def clock_of(kernel: Kernel) -> SimulatedClock:
    assert isinstance(kernel.clock, SimulatedClock)
    return kernel.clock


async def test_only_hazardous_dispatches_wait_for_an_inspector(start: Start) -> None:
    kernel = await ready(await start())
    await policy_services(kernel).change_approval_rule(ADMIN, RULE, add=True)
    safe = await kernel.processes.spawn("dispatcher", {"hazard": False}, principal=ADMIN)
    done = await kernel.processes.wait(safe.pid, timeout=WAIT)
    assert done.state is ProcessState.DONE and done.output["result"] == "dispatched"
    assert await kernel.processes.approvals(status=None) == []

    risky = await kernel.processes.spawn("dispatcher", {"hazard": True}, principal=ADMIN)
    approval = await waiting(kernel, risky)
    assert (approval.required_role, approval.rule, approval.escalation) == (
        "inspector",
        RULE,
        ("admin",),
    )
    assert approval.deadline is not None
    assert (approval.deadline - approval.created_at).total_seconds() == STEP
    assert EFFECTS == ["dispatch hazard=False"]  # the hazardous one has not run
    with pytest.raises(PolicyDenied, match="approval:inspector"):
        await kernel.processes.decide(approval.id, approved=True, by=OTTO)
    await kernel.processes.decide(approval.id, approved=True, by=INES, comment="checked")
    done = await kernel.processes.wait(risky.pid, timeout=WAIT)
    assert done.state is ProcessState.DONE, done.error
    assert EFFECTS == ["dispatch hazard=False", "dispatch hazard=True"]
    (requested,) = await audited(kernel, "approval.requested")
    assert requested.rule == RULE and requested.pid == risky.pid


async def test_an_unanswered_approval_escalates_then_expires(start: Start) -> None:
    kernel = await ready(await start())
    clock = clock_of(kernel)
    seen = Recorder()
    kernel.events.subscribe("approval.#", seen, name="hitl")
    await policy_services(kernel).change_approval_rule(ADMIN, RULE, add=True)
    info = await kernel.processes.spawn("dispatcher", {"hazard": True}, principal=ADMIN)
    first = await waiting(kernel, info)
    await asyncio.wait_for(clock.wait_for_sleepers(1), WAIT)

    await clock.advance(STEP - 1)  # not yet
    assert (await waiting(kernel, info)).level == 0
    await clock.advance(1)
    escalated = await waiting(kernel, info)
    assert (escalated.id, escalated.required_role, escalated.level) == (first.id, "admin", 1)
    assert escalated.deadline is not None
    assert (escalated.deadline - clock.now()).total_seconds() == STEP
    (record,) = await audited(kernel, "approval.escalated")
    assert record.principal == "kernel" and record.pid == info.pid and record.rule == RULE
    assert "inspector did not answer; now admin" in (record.summary or "")
    await asyncio.wait_for(kernel.events.drain(), WAIT)
    assert [(e.topic, e.data["role"], e.data.get("from_role")) for e in seen.events] == [
        ("approval.requested", "inspector", None),
        ("approval.escalated", "admin", "inspector"),
    ]
    # Who may answer is decided on the role it escalated to now.
    with pytest.raises(PolicyDenied, match="approval:admin"):
        await kernel.processes.decide(first.id, approved=True, by=OTTO)

    await asyncio.wait_for(clock.wait_for_sleepers(1), WAIT)
    await clock.advance(STEP)
    failed = await kernel.processes.wait(info.pid, timeout=WAIT)
    assert failed.state is ProcessState.FAILED
    assert failed.error["code"] == "approval_denied"
    assert (
        "expired after 30m without an answer from inspector, then admin"
        in (failed.error["message"])
    )
    assert EFFECTS == []
    (expired,) = await kernel.processes.approvals(status="expired")
    assert expired.decided_by == "kernel" and expired.answer["expired"] is True
    (record,) = await audited(kernel, "approval.expired")
    assert record.principal == "kernel" and "expired after 30m" in (record.summary or "")
    await asyncio.wait_for(kernel.events.drain(), WAIT)
    assert [e.topic for e in seen.events] == [
        "approval.requested",
        "approval.escalated",
        "approval.expired",
    ]
    with pytest.raises(Conflict, match="already expired"):
        await kernel.processes.decide(first.id, approved=True, by=ADMIN)


async def test_deadlines_survive_a_restart(start: Start) -> None:
    kernel = await ready(await start())
    clock = clock_of(kernel)
    await policy_services(kernel).change_approval_rule(ADMIN, RULE, add=True)
    info = await kernel.processes.spawn("dispatcher", {"hazard": True}, principal=ADMIN)
    await waiting(kernel, info)
    await kernel.stop()

    # Restarted before the deadline: the timer is armed from the database.
    kernel = await start()
    await asyncio.wait_for(clock.wait_for_sleepers(1), WAIT)
    await clock.advance(STEP)
    escalated = await waiting(kernel, info)
    assert (escalated.required_role, escalated.level) == ("admin", 1)
    await kernel.stop()

    # Down past the next deadline: handled as soon as the kernel is back.
    await clock.advance(2 * STEP)
    kernel = await start()
    failed = await kernel.processes.wait(info.pid, timeout=WAIT)
    assert failed.state is ProcessState.FAILED and failed.error["code"] == "approval_denied"
    assert "expired after 45m" in failed.error["message"]


async def test_rules_apply_without_restart(start: Start) -> None:
    kernel = await ready(await start())
    services = policy_services(kernel)

    async def run(hazard: bool) -> ProcessInfo:
        info = await kernel.processes.spawn("dispatcher", {"hazard": hazard}, principal=ADMIN)
        return await kernel.processes.wait(info.pid, timeout=WAIT, until=SETTLED)

    assert (await run(True)).state is ProcessState.DONE
    await services.change_approval_rule(ADMIN, RULE, add=True)
    assert (await run(True)).state is ProcessState.WAITING
    await services.change_approval_rule(ADMIN, RULE, add=False)
    assert (await run(True)).state is ProcessState.DONE
    assert [a.event for a in await audited(kernel, "approval_rule.added")] == [
        "approval_rule.added"
    ]
    (removed,) = await audited(kernel, "approval_rule.removed")
    assert removed.summary == RULE and removed.principal == "default/admin"


async def test_a_replayed_approved_call_keeps_the_later_question_aligned(start: Start) -> None:
    kernel = await ready(await start())
    await policy_services(kernel).change_approval_rule(ADMIN, RULE, add=True)
    info = await kernel.processes.spawn("then-ask", {}, principal=ADMIN)
    tool_approval = await waiting(kernel, info)
    assert tool_approval.kind == "tool.call" and tool_approval.required_role == "inspector"
    await kernel.processes.decide(tool_approval.id, approved=True, by=INES)
    question = await waiting(kernel, info)
    assert question.kind == "human.ask"
    # The policy no longer asks, but the call asked before: its re-run still consumes its
    # answer, so the question gets its own.
    await policy_services(kernel).change_approval_rule(ADMIN, RULE, add=False)
    await kernel.processes.decide(question.id, approved=True, value="north", by=ADMIN)
    done = await kernel.processes.wait(info.pid, timeout=WAIT)
    assert done.state is ProcessState.DONE, done.error
    assert done.output["depot"] == "north" and done.output["result"] == "dispatched"
    assert EFFECTS == ["dispatch hazard=True"]


async def test_the_answering_role_is_told_by_a_signed_webhook(kernos_settings: Settings) -> None:
    # The human-in-the-loop path end to end: the inspector's webhook hears of the request,
    # the next role's (here through "*") of the escalation, each signed with the tenant's
    # secret, as a receiver checks it with plain hmac.
    from kernos.api.webhooks import master_key, tenant_secret, verify_signature
    from tests.api.test_webhooks import free_port, serving

    with serving(free_port()) as inspector, serving(free_port()) as others:
        settings = kernos_settings.model_copy(
            update={
                "hitl_webhooks": {"inspector": inspector.url, "*": others.url},
                "webhook_allow_private": True,  # the receivers listen on 127.0.0.1
            }
        )
        clock = SimulatedClock()
        plugins = PluginManager(entry_points=False, builtins=BUILTINS)
        plugins.add(Agents(), name="test-agents")
        kernel = Kernel(settings, plugins=plugins, clock=clock)
        await kernel.start()
        try:
            await ready(kernel)
            await policy_services(kernel).change_approval_rule(ADMIN, RULE, add=True)
            info = await kernel.processes.spawn("dispatcher", {"hazard": True}, principal=ADMIN)
            approval = await waiting(kernel, info)
            await asyncio.wait_for(kernel.events.drain(), WAIT)
            await asyncio.wait_for(clock.wait_for_sleepers(1), WAIT)
            await clock.advance(STEP)
            await waiting(kernel, info)
            await asyncio.wait_for(kernel.events.drain(), WAIT)
            secret = tenant_secret(master_key(settings.home), "default")
        finally:
            await kernel.stop()
    [told] = inspector.received
    body = json.loads(told.body)
    assert body["type"] == "approval.requested" and body["tenant"] == "default"
    assert body["data"]["approval_id"] == approval.id and body["data"]["role"] == "inspector"
    assert body["data"]["proposed"] == {"tool": "dispatch_trucks", "args": {"hazard": True}}
    verify_signature(secret, told.headers["Kernos-Signature"], told.body, now=_signed_at(told))
    [escalated] = others.received
    assert json.loads(escalated.body)["type"] == "approval.escalated"
    header = escalated.headers["Kernos-Signature"]
    verify_signature(secret, header, escalated.body, now=_signed_at(escalated))
    with pytest.raises(InvalidInput):  # a body changed on the way is refused
        verify_signature(secret, header, escalated.body + b" ", now=_signed_at(escalated))
    # Nobody but the kernel may publish on approval topics (a forged request would page an
    # inspector with a signed webhook).
    from kernos.kernel.events.topics import check_not_reserved

    with pytest.raises(InvalidInput, match="kernel's own"):
        check_not_reserved("approval.requested", "x")


def _signed_at(received: Any) -> float:
    """The signing time a received webhook names (the kernel's clock is simulated here)."""
    header = received.headers["Kernos-Signature"]
    return float(dict(p.split("=", 1) for p in header.split(","))["t"])
