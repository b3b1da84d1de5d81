"""Approval rules through the real API and CLI of a real kernel: who may change them, who
may answer the approvals they create, and what the audit log keeps."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.storage.models import AuditRow
from kernos.kernel.tokens import read_admin_token
from tests.conftest import served_kernel

from .test_approval_escalation import BUILTINS, EFFECTS, Agents

RULE = "a, default, tool:dispatch_trucks, call, hazard == true, inspector, 1d, admin"
ROUTE = "/v1/policy/approval-rules"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Api:
    def __init__(self, kernel: Kernel, base_url: str, admin: httpx.AsyncClient) -> None:
        self.kernel = kernel
        self.base_url = base_url
        self.admin = admin

    def client(self, token: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)

    async def key(self, principal: str, role: str, *, tenant: str | None = None) -> str:
        body = {"principal": principal, "role": role, "tenant": tenant}
        response = await self.admin.post("/v1/keys", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


@pytest.fixture
async def api(kernos_home: Path) -> AsyncIterator[Api]:
    EFFECTS.clear()
    port = free_port()
    plugins = PluginManager(entry_points=False, builtins=BUILTINS)
    plugins.add(Agents(), name="test-agents")
    settings = load_settings(home=kernos_home, api_port=port)
    kernel = Kernel(settings, plugins=plugins, serve_api=True)
    await kernel.start()
    headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as admin:
            yield Api(kernel, base_url, admin)
    finally:
        await kernel.stop()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return dict(response.json())


async def settled(http: httpx.AsyncClient, pid: int) -> dict[str, Any]:
    for _ in range(400):
        found = (await http.get(f"/v1/processes/{pid}")).json()
        if found["state"] in ("waiting", "done", "failed", "killed"):
            return dict(found)
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} did not settle: {found}")


async def rules(http: httpx.AsyncClient) -> list[str]:
    response = await http.get(ROUTE)
    assert response.status_code == 200, response.text
    return [rule["line"] for rule in response.json()["data"]]


async def test_an_inspector_answers_what_a_rule_sends_to_inspectors(api: Api) -> None:
    added = await api.admin.post(ROUTE, json={"line": RULE.replace(", ", ",")})
    assert added.status_code == 201, added.text
    assert added.json() == {
        "line": RULE,
        "tenant": "default",
        "object": "tool:dispatch_trucks",
        "action": "call",
        "condition": "hazard == true",
        "role": "inspector",
        "deadline_seconds": 86400.0,
        "escalation": ["admin"],
    }
    operator = await api.key("otto", "operator")
    inspector = await api.key("ines", "inspector")
    async with api.client(operator) as otto, api.client(inspector) as ines:
        safe = await otto.post("/v1/runs", json={"agent": "dispatcher", "input": {"hazard": False}})
        assert (await settled(otto, safe.json()["pid"]))["state"] == "done"
        run = await otto.post("/v1/runs", json={"agent": "dispatcher", "input": {"hazard": True}})
        pid = run.json()["pid"]
        assert (await settled(otto, pid))["state"] == "waiting"
        (approval,) = (await otto.get("/v1/approvals")).json()["data"]
        assert approval["required_role"] == "inspector" and approval["rule"] == RULE
        assert approval["escalation"] == ["admin"] and approval["level"] == 0
        assert approval["deadline"] is not None
        answer = {"approved": True, "comment": "checked"}
        denied = problem(await otto.post(f"/v1/approvals/{approval['id']}", json=answer), 403)
        assert "approval:inspector" in denied["detail"]
        answered = await ines.post(f"/v1/approvals/{approval['id']}", json=answer)
        assert answered.status_code == 200, answered.text
        assert (await settled(otto, pid))["state"] == "done"
    assert EFFECTS == ["dispatch hazard=False", "dispatch hazard=True"]


async def test_rule_changes_are_validated_tenant_bound_and_audited(api: Api) -> None:
    assert (await api.admin.post(ROUTE, json={"line": RULE})).status_code == 201
    for bad, words in (
        ("a, default, tool:dispatch_trucks, call, hazard == true, wizard", "unknown role"),
        ("a, default, tool:dispatch_trucks, call, hazard ~ true, inspector", "operator"),
        ("a, default, tool:dispatch_trucks, call, *, inspector, soon", "not a duration"),
    ):
        assert words in problem(await api.admin.post(ROUTE, json={"line": bad}), 400)["detail"]
    problem(await api.admin.post(ROUTE, json={"line": RULE}), 409)
    assert await rules(api.admin) == [RULE]

    mayor_token = await api.key("mayor", "admin", tenant="city")
    viewer_token = await api.key("vera", "viewer")
    city_rule = "a, city, tool:*, call, *, operator"
    async with api.client(mayor_token) as mayor, api.client(viewer_token) as vera:
        every = "a, *, tool:*, call, *, admin"
        assert (
            "every tenant" in problem(await mayor.post(ROUTE, json={"line": every}), 403)["detail"]
        )
        problem(await mayor.post(ROUTE, json={"line": RULE.replace("a, default", "a, x")}), 404)
        problem(await mayor.post(ROUTE, json={"line": RULE}), 404)  # never confirms others
        assert (await mayor.post(ROUTE, json={"line": city_rule})).status_code == 201
        assert await rules(mayor) == [city_rule]  # not the default tenant's
        assert await rules(vera) == [RULE]
        problem(await vera.post(ROUTE, json={"line": city_rule}), 403)
        problem(await mayor.post(f"{ROUTE}/remove", json={"line": RULE}), 404)
    removed = await api.admin.post(f"{ROUTE}/remove", json={"line": RULE})
    assert removed.status_code == 204, removed.text
    problem(await api.admin.post(f"{ROUTE}/remove", json={"line": RULE}), 404)
    assert await rules(api.admin) == []
    async with api.kernel.db.read() as session:
        found = (
            await session.execute(
                select(AuditRow.event, AuditRow.tenant, AuditRow.principal, AuditRow.summary)
                .where(AuditRow.event.like("approval_rule.%"))
                .order_by(AuditRow.seq)
            )
        ).all()
    assert [tuple(row) for row in found] == [
        ("approval_rule.added", "default", "default/admin", RULE),
        ("approval_rule.added", "city", "city/mayor", city_rule),
        ("approval_rule.removed", "default", "default/admin", RULE),
    ]


def test_cli_approval_rules_are_an_api_client(tmp_path: Path) -> None:
    with served_kernel(tmp_path / "home") as served:

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return served.kernos("policy", "approval-rules", *args)

        added = run("add", RULE)
        assert added.returncode == 0, added.stderr
        assert added.stdout.strip() == f"added: {RULE}"
        # Unquoted, the shell splits the rule into words: they are joined back with spaces.
        words = run("add", "a,", "*,", "tool:wire_*,", "call,", "amount", ">", "1000,", "admin")
        assert words.returncode == 0, words.stderr
        listed = run("list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [r["line"] for r in json.loads(listed.stdout)] == [
            RULE,
            "a, *, tool:wire_*, call, amount > 1000, admin",
        ]
        table = run("list")
        assert table.returncode == 0 and RULE in table.stdout
        bad = run("add", "a, default, tool:x, call, *, wizard")
        assert bad.returncode == 2 and "unknown role 'wizard'" in bad.stderr
        removed = run("remove", RULE)
        assert removed.returncode == 0, removed.stderr
        missing = run("remove", RULE)
        assert missing.returncode == 2 and "no approval rule" in missing.stderr
