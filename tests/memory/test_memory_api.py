"""``/v1/memory`` over real HTTP, and ``kernos memory`` as an API client of ``kernos serve``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.tokens import LOCAL_ADMIN_PRINCIPAL, read_admin_token
from kernos.policy.service import policy_services
from tests.conftest import free_port, served_kernel

PROBLEM = "application/problem+json"


@dataclass
class Api:
    kernel: Kernel
    admin: httpx.AsyncClient
    base_url: str

    async def client_for(self, name: str, role: str, tenant: str) -> httpx.AsyncClient:
        created = await policy_services(self.kernel).create_key(
            LOCAL_ADMIN_PRINCIPAL, name=name, role=role, tenant=tenant
        )
        headers = {"Authorization": f"Bearer {created.token}"}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=60)


@pytest.fixture
async def api(kernos_home: Path) -> AsyncIterator[Api]:
    port = free_port()
    settings = load_settings(home=kernos_home, api_port=port)
    kernel = Kernel(settings, plugins=PluginManager(entry_points=False), serve_api=True)
    await kernel.start()
    base_url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as http:
            yield Api(kernel=kernel, admin=http, base_url=base_url)
    finally:
        await kernel.stop()


def problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["type"] == f"urn:kernos:error:{code}"
    return body


async def test_put_search_forget_over_http(api: Api) -> None:
    http = api.admin
    put = await http.post(
        "/v1/memory/city",
        json={
            "documents": ["Bin 17 on Elm Street overflows on Mondays.", "The bridge is closed."],
            "metadatas": [{"street": "Elm", "level": 3}, None],
        },
    )
    assert put.status_code == 201, put.text
    ids = put.json()["ids"]
    assert put.json()["count"] == 2 and len(set(ids)) == 2
    found = await http.post(
        "/v1/memory/city/search", json={"query": "which rubbish container is full?", "limit": 1}
    )
    assert found.status_code == 200
    [hit] = found.json()["data"]
    assert hit["id"] == ids[0] and hit["metadata"] == {"street": "Elm", "level": 3}
    filtered = await http.post(
        "/v1/memory/city/search", json={"query": "rubbish", "where": {"street": "Nowhere"}}
    )
    assert filtered.json() == {"data": [], "count": 0}
    gone = await http.post("/v1/memory/city/forget", json={"where": {"street": "Elm"}})
    assert gone.json() == {"forgotten": 1}
    gone = await http.post("/v1/memory/city/forget", json={"ids": [ids[1]]})
    assert gone.json() == {"forgotten": 1}
    # A retried put with the same Idempotency-Key replaces instead of duplicating.
    for _ in range(2):
        again = await http.post(
            "/v1/memory/city", json={"documents": ["Once."]}, headers={"Idempotency-Key": "k-1"}
        )
        assert again.status_code == 201
    empty = await http.post("/v1/memory/city/search", json={"query": "once", "limit": 10})
    assert [h["text"] for h in empty.json()["data"]] == ["Once."]


async def test_bad_requests_are_problems(api: Api) -> None:
    http = api.admin
    problem(await http.post("/v1/memory/ab", json={"documents": ["x"]}), 400, "invalid_input")
    problem(await http.post("/v1/memory/city", json={"documents": []}), 422, "invalid_input")
    problem(
        await http.post("/v1/memory/city/search", json={"query": "q", "limit": 500}),
        422,
        "invalid_input",
    )
    problem(await http.post("/v1/memory/city/forget", json={}), 400, "invalid_input")
    problem(
        await http.post("/v1/memory/city", json={"documents": ["x"], "colour": 1}),
        422,
        "invalid_input",
    )


async def test_tenants_are_isolated_and_roles_apply(api: Api) -> None:
    acme = await api.client_for("ann", "operator", "acme")
    globex = await api.client_for("bob", "operator", "globex")
    viewer = await api.client_for("vic", "viewer", "acme")
    async with acme, globex, viewer:
        put = await acme.post("/v1/memory/notes", json={"documents": ["Acme's code is 1234."]})
        assert put.status_code == 201
        # The same collection name in another tenant is another, empty collection.
        other = await globex.post("/v1/memory/notes/search", json={"query": "code", "limit": 10})
        assert other.json()["count"] == 0
        forgot = await globex.post("/v1/memory/notes/forget", json={"ids": put.json()["ids"]})
        assert forgot.json() == {"forgotten": 0}
        admin = await api.admin.post("/v1/memory/notes/search", json={"query": "code"})
        assert admin.json()["count"] == 0  # the local admin's tenant is 'default'
        # A viewer of acme reads it but may not write.
        seen = await viewer.post("/v1/memory/notes/search", json={"query": "what is the code?"})
        assert [h["text"] for h in seen.json()["data"]] == ["Acme's code is 1234."]
        body = problem(
            await viewer.post("/v1/memory/notes", json={"documents": ["vic"]}), 403, "policy_denied"
        )
        assert "memory:notes" in str(body["detail"])


def test_cli_memory_commands_are_api_clients_and_memory_outlives_the_kernel(
    tmp_path: Path,
) -> None:
    with served_kernel(tmp_path / "home") as served:
        run = served.kernos
        put = run("memory", "put", "--collection", "city", "Bin 17 overflows", "--meta", "level=3")
        assert put.returncode == 0, put.stderr
        doc_id = put.stdout.strip()
        run("memory", "put", "-c", "city", "The bridge is closed", "--meta", "zip=02134")
        found = run("memory", "search", "--collection", "city", "--json", "full rubbish bin")
        assert found.returncode == 0, found.stderr
        hits = json.loads(found.stdout)
        assert hits[0]["id"] == doc_id and hits[0]["metadata"] == {"level": 3}
        table = run("memory", "search", "-c", "city", "--limit", "1", "bridge")
        assert table.stdout.splitlines()[0].split() == ["ID", "DISTANCE", "TEXT", "METADATA"]
        assert "zip=02134" in table.stdout  # not read as a number
        by_where = run("memory", "forget", "--collection", "city", "--where", "zip=02134")
        assert by_where.returncode == 0 and by_where.stdout.strip() == "forgot 1"
        by_id = run("memory", "forget", "--collection", "city", doc_id, "--json")
        assert json.loads(by_id.stdout) == {"forgotten": 1}
        bad = run("memory", "search", "--collection", "x", "anything")
        assert bad.returncode == 2 and "collection name" in bad.stderr
        neither = run("memory", "forget", "--collection", "city")
        assert neither.returncode == 2
        kept = run("memory", "put", "-c", "city", "The depot gate code is 4711.", "--id", "gate")
        assert kept.returncode == 0 and kept.stdout.strip() == "gate"
    gone = served.kernos("memory", "search", "--collection", "city", "anything")
    assert gone.returncode == 4
    # A new kernel process on the same home finds what the first one stored (on disk).
    with served_kernel(tmp_path / "home") as again:
        found = again.kernos("memory", "search", "-c", "city", "--json", "door code of the depot")
        assert found.returncode == 0, found.stderr
        assert [h["id"] for h in json.loads(found.stdout)] == ["gate"]
