"""Keys, roles and tenant isolation through the real API of a real kernel (policy plugin on)."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest
from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec, ToolSpec
from kernos.kernel.events import Event, Trigger
from kernos.kernel.governed import ask_human
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.storage.models import ApiKeyRow, AuditRow
from kernos.kernel.tokens import read_admin_token
from kernos.policy.keys import digest
from kernos.policy.service import SERVICE_KEYS, policy_services
from tests.conftest import served_kernel

PROBLEM = "application/problem+json"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AskState(TypedDict, total=False):
    answer: Any


def build_asker(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def ask(state: AskState) -> AskState:
        return {"answer": await ask_human("Collect the hazardous bin?", required_role="inspector")}

    graph = StateGraph(AskState)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return graph.compile()


def build_noop(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def noop(state: AskState) -> AskState:
        return {"answer": "done"}

    graph = StateGraph(AskState)
    graph.add_node("noop", noop)
    graph.add_edge(START, "noop")
    graph.add_edge("noop", END)
    return graph.compile()


class Agents:
    @hookimpl
    def register_tools(self, register: Any) -> None:
        register(ToolSpec(name="echo", description="Echo.", func=lambda text: text))

    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(AgentSpec(name="asker", description="Asks an inspector.", build=build_asker))
        register(AgentSpec(name="noop", description="Does nothing.", build=build_noop))


@dataclass
class Api:
    kernel: Kernel
    base_url: str
    home: Path
    admin: httpx.AsyncClient

    def client(self, token: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)

    async def key(
        self, principal: str, role: str, *, tenant: str | None = None, **extra: Any
    ) -> str:
        body = {"principal": principal, "role": role, "tenant": tenant, **extra}
        response = await self.admin.post("/v1/keys", json=body)
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["token"].startswith("kn_") and created["status"] == "active"
        return str(created["token"])


async def start(home: Path, port: int) -> Kernel:
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="test-agents")
    kernel = Kernel(load_settings(home=home, api_port=port), plugins=plugins, serve_api=True)
    await kernel.start()
    return kernel


@pytest.fixture
async def api(kernos_home: Path) -> AsyncIterator[Api]:
    port = free_port()
    kernel = await start(kernos_home, port)
    base_url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as admin:
            yield Api(kernel=kernel, base_url=base_url, home=kernos_home, admin=admin)
    finally:
        await kernel.stop()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return dict(response.json())


async def settled(http: httpx.AsyncClient, pid: int) -> dict[str, Any]:
    for _ in range(400):
        found = (await http.get(f"/v1/processes/{pid}")).json()
        if found["state"] in ("waiting", "done", "failed", "killed"):
            return dict(found)
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} did not settle: {found}")


async def test_a_fresh_home_is_bootstrapped_once(api: Api) -> None:
    notices = "\n".join(api.kernel.notices)
    assert "Admin API key" in notices
    token = notices.strip().splitlines()[-1]
    async with api.client(token) as admin_by_key:
        assert (await admin_by_key.get("/v1/processes")).status_code == 200
    assert stat.S_IMODE((api.home / "keys").stat().st_mode) == 0o700
    for name, _, _ in SERVICE_KEYS:
        path = api.home / "keys" / f"{name}.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    async with api.kernel.db.read() as session:
        stored = set(await session.scalars(select(ApiKeyRow.digest)))
    assert digest(token) in stored and token not in stored  # only hashes are kept
    # A restart on the same home creates nothing new.
    await api.kernel.stop()
    again = await start(api.home, free_port())
    try:
        assert again.notices == []
        async with again.db.read() as session:
            assert set(await session.scalars(select(ApiKeyRow.digest))) == stored
    finally:
        await again.stop()
    await api.kernel.start()  # the fixture stops it


async def test_the_forwarder_key_is_least_privilege(api: Api) -> None:
    token = (api.home / "keys" / "edge-forwarder.key").read_text().strip()
    async with api.client(token) as forwarder:
        problem(await forwarder.get("/v1/processes"), 403)
        problem(await forwarder.post("/v1/runs", json={"agent": "noop"}), 403)
        problem(await forwarder.get("/v1/keys"), 403)


async def test_roles_decide_what_a_key_may_do(api: Api) -> None:
    viewer = await api.key("vera", "viewer")
    operator = await api.key("otto", "operator")
    async with api.client(viewer) as vera, api.client(operator) as otto:
        denied = problem(await vera.post("/v1/runs", json={"agent": "noop"}), 403)
        assert "agent:noop" in denied["detail"] and "rule" in denied["detail"]
        run = await otto.post("/v1/runs", json={"agent": "noop"})
        assert run.status_code == 201, run.text
        pid = run.json()["pid"]
        assert (await vera.get(f"/v1/processes/{pid}")).status_code == 200
        problem(await vera.post(f"/v1/processes/{pid}/signal", json={"signal": "kill"}), 403)
        problem(await otto.post("/v1/keys", json={"principal": "x", "role": "admin"}), 403)
    async with api.kernel.db.read() as session:
        events = list(await session.scalars(select(AuditRow.event)))
    assert events.count("operator.denied") >= 3
    assert "key.created" in events


async def test_an_approval_needs_the_role_it_names(api: Api) -> None:
    operator = await api.key("otto", "operator")
    inspector = await api.key("ines", "inspector")
    async with api.client(operator) as otto, api.client(inspector) as ines:
        pid = (await otto.post("/v1/runs", json={"agent": "asker"})).json()["pid"]
        assert (await settled(otto, pid))["state"] == "waiting"
        (approval,) = (await otto.get("/v1/approvals")).json()["data"]
        decision = {"approved": True, "comment": "checked"}
        problem(await otto.post(f"/v1/approvals/{approval['id']}", json=decision), 403)
        answered = await ines.post(f"/v1/approvals/{approval['id']}", json=decision)
        assert answered.status_code == 200, answered.text
        assert (await settled(otto, pid))["state"] == "done"


async def test_revoked_and_expired_keys_are_refused_with_the_reason(api: Api) -> None:
    token = await api.key("temp", "viewer")
    keys = (await api.admin.get("/v1/keys")).json()["data"]
    key_id = next(k["key_id"] for k in keys if k["principal"] == "temp")
    async with api.client(token) as temp:
        assert (await temp.get("/v1/processes")).status_code == 200
        revoked = await api.admin.post(f"/v1/keys/{key_id}/revoke")
        assert revoked.json()["status"] == "revoked"
        body = problem(await temp.get("/v1/processes"), 401)
        assert "revoked" in body["detail"]
    problem(await api.admin.post(f"/v1/keys/{key_id}/revoke"), 409)
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    short = await api.key("brief", "viewer", expires_at=soon)
    await asyncio.sleep(1.2)
    async with api.client(short) as brief:
        assert "expired" in problem(await brief.get("/v1/processes"), 401)["detail"]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    problem(
        await api.admin.post(
            "/v1/keys", json={"principal": "p", "role": "viewer", "expires_at": past}
        ),
        400,
    )
    unknown = problem(
        await api.admin.post("/v1/keys", json={"principal": "p", "role": "wizard"}), 400
    )
    assert "unknown role 'wizard'" in unknown["detail"]


async def test_tenants_are_isolated_through_every_route(api: Api) -> None:
    city_admin = await api.key("mayor", "admin", tenant="city")
    local_operator = await api.key("otto", "operator")
    async with api.client(city_admin) as mayor, api.client(local_operator) as otto:
        pid = (await mayor.post("/v1/runs", json={"agent": "asker"})).json()["pid"]
        await settled(mayor, pid)
        (approval,) = (await mayor.get("/v1/approvals")).json()["data"]
        # The other tenant sees nothing and can touch nothing: 404, never 403 or 200.
        problem(await otto.get(f"/v1/processes/{pid}"), 404)
        problem(await otto.post(f"/v1/processes/{pid}/signal", json={"signal": "kill"}), 404)
        problem(await otto.post(f"/v1/approvals/{approval['id']}", json={"approved": True}), 404)
        assert pid not in [p["pid"] for p in (await otto.get("/v1/processes")).json()["data"]]
        assert (await otto.get("/v1/approvals")).json()["count"] == 0
        city_keys = (await mayor.get("/v1/keys")).json()["data"]
        assert {k["tenant"] for k in city_keys} == {"city"}
        mayor_key = city_keys[0]["key_id"]
        problem(await api.admin.post(f"/v1/keys/{mayor_key}/revoke"), 404)
        # A tenant admin cannot reach into another tenant either.
        problem(
            await mayor.post(
                "/v1/keys", json={"principal": "x", "role": "admin", "tenant": "default"}
            ),
            404,
        )
        problem(
            await mayor.get(
                "/v1/policy/check",
                params={
                    "subject": "otto",
                    "tenant": "default",
                    "object": "tool:x",
                    "action": "call",
                },
            ),
            404,
        )
        problem(await mayor.post("/v1/policy", json={"line": "g, eve, admin, default"}), 404)
        lines = (await mayor.get("/v1/policy")).json()["data"]
        assert all(
            ", default" not in line.split(", ", 2)[-1] for line in lines if line.startswith("g")
        )
        audit = await otto.get("/v1/audit")
        if audit.status_code == 200:
            assert all(r["tenant"] == "default" for r in audit.json()["data"])


async def test_policy_changes_apply_without_restart(api: Api) -> None:
    token = await api.key("vera", "viewer")
    async with api.client(token) as vera:
        problem(await vera.post("/v1/runs", json={"agent": "noop"}), 403)
        added = await api.admin.post(
            "/v1/policy", json={"line": "p, vera, default, agent:noop, spawn, allow"}
        )
        assert added.status_code == 204, added.text
        assert (await vera.post("/v1/runs", json={"agent": "noop"})).status_code == 201
        bad = problem(await api.admin.post("/v1/policy", json={"line": "p, vera, default"}), 400)
        assert "policy line" in bad["detail"]
        assert (await vera.post("/v1/runs", json={"agent": "noop"})).status_code == 201
        removed = await api.admin.post(
            "/v1/policy/remove", json={"line": "p, vera, default, agent:noop, spawn, allow"}
        )
        assert removed.status_code == 204
        problem(await vera.post("/v1/runs", json={"agent": "noop"}), 403)


async def test_a_trigger_runs_as_its_creator_with_its_grants(api: Api) -> None:
    kernel = api.kernel
    services = policy_services(kernel)
    await services.keys.create("default", "sensor-bot", role="viewer", created_by="test")
    await services.engine.grant_role("sensor-bot", "viewer", "default")
    creator = Principal(tenant="default", name="sensor-bot", kind=PrincipalKind.SERVICE)
    kernel.events.add_trigger(
        Trigger(
            name="on-fill", pattern="bin.fill", agent="noop", tenant="default", principal=creator
        )
    )
    await kernel.events.publish(
        Event(id="e-1", topic="bin.fill", tenant="default", source="s", data={})
    )
    for _ in range(200):  # a viewer may not spawn: the delivery fails, audited as the creator
        async with kernel.db.read() as session:
            denied = list(
                await session.scalars(
                    select(AuditRow.principal).where(AuditRow.event == "operator.denied")
                )
            )
        if denied:
            break
        await asyncio.sleep(0.05)
    assert denied == ["default/sensor-bot"]
    await services.engine.add("p, sensor-bot, default, agent:noop, spawn, allow")
    await kernel.events.publish(
        Event(id="e-2", topic="bin.fill", tenant="default", source="s", data={})
    )
    for _ in range(200):
        found = await kernel.processes.list_processes(tenant="default")
        if found:
            break
        await asyncio.sleep(0.05)
    assert [p.owner for p in found] == ["sensor-bot"]


def test_cli_keys_and_policy_are_api_clients(tmp_path: Path) -> None:
    with served_kernel(tmp_path / "home") as served:
        run = served.kernos
        created = run(
            "keys",
            "create",
            "--principal",
            "otto",
            "--role",
            "operator",
            "--expires",
            "30d",
            "--json",
        )
        assert created.returncode == 0, created.stderr
        assert '"token": "kn_' in created.stdout
        allowed = run("policy", "check", "otto", "default", "tool:echo", "call")
        assert allowed.returncode == 0 and allowed.stdout.startswith("allow: ")
        denied = run("policy", "check", "otto", "default", "key:*", "admin")
        assert denied.returncode == 3 and denied.stdout.startswith("deny: ")
        bad = run("policy", "add", "g", "otto", "wizard", "default")
        assert bad.returncode == 2 and "wizard" in bad.stderr
        listed = run("keys", "list", "--json")
        assert listed.returncode == 0 and '"otto"' in listed.stdout and "kn_" not in listed.stdout
        expiry = run("keys", "create", "--principal", "x", "--role", "viewer", "--expires", "soon")
        assert expiry.returncode == 2 and "--expires" in expiry.stderr
