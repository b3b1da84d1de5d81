"""``/v1/models`` over real HTTP, with the real policy deciding who may change the registry."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.tokens import read_admin_token

PROBLEM = "application/problem+json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:kernos:error:{code}"
    return body


@pytest.fixture
async def http(kernos_home: Path) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    settings = load_settings(home=kernos_home, api_port=port)
    kernel = Kernel(settings, plugins=PluginManager(entry_points=False), serve_api=True)
    await kernel.start()
    headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
        ) as client:
            yield client
    finally:
        await kernel.stop()


async def test_register_verify_promote_rollback_over_http(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    paths = {}
    for version in ("1", "2"):
        paths[version] = tmp_path / f"model-{version}.onnx"
        paths[version].write_bytes(os.urandom(2048))
        created = await http.post(
            "/v1/models",
            json={
                "path": str(paths[version]),
                "name": "hazard",
                "version": version,
                "kind": "onnx",
                "provenance": {"run": version},
                "price_per_1k_input": 0.1,
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["stage"] == "registered" and not created.json()["signed"]
    problem(
        await http.post(
            "/v1/models", json={"path": str(paths["1"]), "name": "hazard", "version": "1"}
        ),
        409,
        "conflict",
    )
    problem(
        await http.post("/v1/models", json={"path": "rel.bin", "name": "x", "version": "1"}),
        400,
        "invalid_input",
    )

    listed = (await http.get("/v1/models", params={"name": "hazard"})).json()
    assert listed["count"] == 2 and [m["version"] for m in listed["data"]] == ["1", "2"]
    assert (await http.get("/v1/models", params={"name": "other"})).json()["count"] == 0
    ok = await http.post("/v1/models/hazard/verify", json={"version": "1"})
    assert ok.status_code == 200 and ok.json()["ok"] is True

    promoted = await http.post("/v1/models/hazard/promote", json={"version": "1", "stage": "live"})
    assert promoted.status_code == 200 and promoted.json()["deployment"] == "live"
    canary = await http.post(
        "/v1/models/hazard/promote", json={"version": "2", "stage": "canary:25"}
    )
    assert canary.json()["deployment"] == "canary:25"
    problem(
        await http.post("/v1/models/hazard/promote", json={"version": "2", "stage": "canary:0"}),
        400,
        "invalid_input",
    )

    data = bytearray(paths["2"].read_bytes())
    data[7] ^= 0xFF
    paths["2"].write_bytes(bytes(data))
    damaged = await http.post("/v1/models/hazard/verify", json={"version": "2"})
    assert damaged.status_code == 200
    assert damaged.json()["ok"] is False and damaged.json()["problems"] == ["bytes_changed"]
    refused = problem(
        await http.post("/v1/models/hazard/promote", json={"version": "2", "stage": "live"}),
        409,
        "check_failed",
    )
    assert "bytes_changed" in refused["detail"]
    versions = (await http.get("/v1/models/hazard")).json()
    assert [m["deployment"] for m in versions["data"]] == ["live", "canary:25"]
    assert versions["traffic"] == []

    problem(await http.post("/v1/models/hazard/rollback"), 409, "conflict")
    problem(await http.get("/v1/models/ghost"), 404, "not_found")
    problem(await http.post("/v1/models/ghost/verify"), 404, "not_found")
    problem(await http.post("/v1/models/ghost/rollback"), 404, "not_found")


async def test_a_viewer_reads_but_cannot_change_the_registry(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    created = await http.post(
        "/v1/keys", json={"principal": "vera", "role": "viewer", "description": "read only"}
    )
    assert created.status_code == 201, created.text
    path = tmp_path / "m.bin"
    path.write_bytes(os.urandom(64))
    assert (
        await http.post("/v1/models", json={"path": str(path), "name": "m", "version": "1"})
    ).status_code == 201
    viewer = {"Authorization": f"Bearer {created.json()['token']}"}
    assert (await http.get("/v1/models", headers=viewer)).json()["count"] == 1
    assert (await http.post("/v1/models/m/verify", headers=viewer)).json()["ok"] is True
    problem(
        await http.post(
            "/v1/models",
            json={"path": str(path), "name": "m", "version": "2"},
            headers=viewer,
        ),
        403,
        "policy_denied",
    )
    problem(
        await http.post(
            "/v1/models/m/promote", json={"version": "1", "stage": "live"}, headers=viewer
        ),
        403,
        "policy_denied",
    )
    assert (await http.get("/v1/models/m")).json()["data"][0]["stage"] == "registered"
