"""``/v1/retention`` over real HTTP, and ``kernos retention show|run`` against it: the policy
in force, dry runs, purges audited under the caller, a tenant admin limited to its tenant,
and viewers refused."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.storage.models import AuditRow, CheckpointRow
from kernos.kernel.tokens import read_admin_token
from kernos.policy.service import policy_services

KERNOS = str(Path(sys.executable).with_name("kernos"))
TOML = "[retention]\ninterval = 0\n[retention.checkpoints]\nkeep_last = 1\n"


def build_counter(build: AgentBuild) -> Any:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        n: int
        goal: int

    async def step(state: State) -> State:
        return {"n": state.get("n", 0) + 1}

    graph = StateGraph(State)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", lambda s: "step" if s["n"] < s["goal"] else END)
    return graph.compile()


class Agents:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(AgentSpec(name="counter", description="Counts.", build=build_counter))


@pytest.fixture
def configured_home(kernos_home: Path) -> Path:
    kernos_home.mkdir(parents=True, exist_ok=True)
    (kernos_home / "kernos.toml").write_text(TOML)
    return kernos_home


@pytest.fixture
async def served(configured_home: Path) -> AsyncIterator[tuple[Kernel, httpx.AsyncClient]]:
    kernos_home = configured_home
    port = int(os.environ["KERNOS_API_PORT"])  # a free one (kernos_home); the CLI reads it
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="test-agents")
    kernel = Kernel(load_settings(home=kernos_home, api_port=port), plugins=plugins, serve_api=True)
    await kernel.start()
    headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
        ) as http:
            yield kernel, http
    finally:
        await kernel.stop()


async def finished(kernel: Kernel, tenant: str, goal: int = 5) -> int:
    by = Principal(tenant=tenant, name="admin", kind=PrincipalKind.PERSON)
    info = await kernel.processes.spawn("counter", {"goal": goal}, principal=by)
    await kernel.processes.wait(info.pid, timeout=60)
    return info.pid


async def checkpoints(kernel: Kernel, pid: int) -> int:
    thread = (await kernel.processes.get(pid)).thread_id
    async with kernel.db.read() as session:
        query = select(func.count()).select_from(CheckpointRow)
        return int(await session.scalar(query.where(CheckpointRow.thread_id == thread)) or 0)


def kernos(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KERNOS_HOME": str(home)}
    return subprocess.run(
        [KERNOS, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_show_and_purge_over_http_and_the_cli(served, kernos_home: Path) -> None:
    kernel, http = served
    services = policy_services(kernel)
    await kernel.identity.ensure_tenant("acme")
    acme_admin = await services.keys.create("acme", "admin", role="admin", created_by="test")
    await services.engine.grant_role("admin", "admin", "acme")
    viewer = await services.keys.create("default", "vera", role="viewer", created_by="test")
    await services.engine.grant_role("vera", "viewer", "default")
    mine = await finished(kernel, "default")
    theirs = await finished(kernel, "acme")

    shown = (await http.get("/v1/retention")).json()
    assert shown["effective"]["checkpoints"]["keep_last"] == 1 and shown["configured"]

    dry = (await http.post("/v1/retention/purge", json={"dry_run": True})).json()
    assert dry["dry_run"] and dry["tenants"]["default"]["checkpoints"]["checkpoints"] > 0
    assert await checkpoints(kernel, mine) > 1

    as_viewer = {"Authorization": f"Bearer {viewer.token}"}
    refused = await http.post("/v1/retention/purge", headers=as_viewer)
    assert refused.status_code == 403
    assert (await http.get("/v1/retention", headers=as_viewer)).status_code == 200

    # A tenant's admin purges its own tenant only.
    as_acme = {"Authorization": f"Bearer {acme_admin.token}"}
    report = (await http.post("/v1/retention/purge", headers=as_acme)).json()
    assert set(report["tenants"]) == {"acme"}
    assert await checkpoints(kernel, theirs) == 1 and await checkpoints(kernel, mine) > 1

    # The CLI, as the local admin: the default tenant's pass covers every tenant.
    result = await asyncio.to_thread(kernos, kernos_home, "retention", "run", "--json")
    assert result.returncode == 0, result.stderr
    ran: dict[str, Any] = json.loads(result.stdout)
    assert ran["tenants"]["default"]["checkpoints"]["checkpoints"] > 0
    assert await checkpoints(kernel, mine) == 1
    text = await asyncio.to_thread(kernos, kernos_home, "retention", "show")
    assert text.returncode == 0 and "keep_last" in text.stdout and "last pass" in text.stdout
    async with kernel.db.read() as session:
        who = list(
            await session.scalars(
                select(AuditRow.principal).where(AuditRow.event == "retention.purged")
            )
        )
    assert who == ["acme/admin", "default/admin"]
