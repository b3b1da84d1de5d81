"""Catalog routes, readiness and Idempotency-Key on runs, over real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kernos.api.plugin import api_server
from tests.api.test_api import Api, api, assert_problem  # the fixture

__all__ = ["api"]


async def test_the_catalog_lists_agents_tools_and_plugins(api: Api) -> None:
    agents = (await api.http.get("/v1/agents")).json()
    greeter = next(a for a in agents["data"] if a["name"] == "greeter")
    assert greeter["input_schema"]["properties"]["name"]["type"] == "string"
    assert greeter["plugin"] == "test-agents"
    tools = (await api.http.get("/v1/tools")).json()
    (add,) = [t for t in tools["data"] if t["name"] == "add"]
    assert add["parameters"]["properties"].keys() == {"a", "b"}
    plugins = (await api.http.get("/v1/plugins")).json()["data"]
    assert {p["name"] for p in plugins} >= {"kernos.policy.plugin", "test-agents"}


async def test_readyz_reports_each_check(api: Api) -> None:
    ready = await api.http.get("/readyz", headers={"Authorization": ""})
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"kernel": "ok", "database": "ok", "pipeline": "ok"},
    }
    await api.kernel.db.stop()  # the database goes away under a running server
    try:
        body = assert_problem(await api.http.get("/readyz"), 503, "kernel_unavailable")
        assert "database failed" in body["detail"]
    finally:
        await api.kernel.db.start()


async def test_an_idempotency_key_returns_the_first_run(api: Api, tmp_path: Path) -> None:
    run = {"agent": "greeter", "input": {"name": "Ada"}}
    headers = {"Idempotency-Key": "order-17"}
    first = await api.http.post("/v1/runs", json=run, headers=headers)
    assert first.status_code == 201, first.text
    again = await api.http.post("/v1/runs", json=run, headers=headers)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["pid"] == first.json()["pid"]
    listed = (await api.http.get("/v1/processes")).json()
    assert [p["pid"] for p in listed["data"]] == [first.json()["pid"]]
    other = await api.http.post("/v1/runs", json={"agent": "asker"}, headers=headers)
    assert "order-17" in assert_problem(other, 400, "invalid_input")["detail"]
    fresh = await api.http.post("/v1/runs", json=run, headers={"Idempotency-Key": "order-18"})
    assert fresh.status_code == 201 and fresh.json()["pid"] != first.json()["pid"]


async def test_events_are_ingested_in_batches_idempotently(api: Api) -> None:
    seen: list[str] = []

    async def handler(event: Any) -> None:
        seen.append(event.id)

    api.kernel.events.subscribe("sensor.bin.*", handler, name="bin-watch")
    batch = {
        "events": [
            {
                "id": f"e-{i}",
                "topic": "sensor.bin.fill",
                "data": {"bin": i, "level": 0.5, "temp_c": 12.0, "voc_ppm": 1.0, "ts": 60.0 * i},
            }
            for i in range(50)
        ]
    }
    first = await api.http.post("/v1/events", json=batch)
    assert first.status_code == 202, first.text
    assert first.json()["accepted"] == 50 and first.json()["ids"][0] == "e-0"
    again = await api.http.post("/v1/events", json=batch)  # a retried batch changes nothing
    assert again.status_code == 202
    for _ in range(200):
        if len(seen) >= 50:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    assert sorted(seen) == sorted(f"e-{i}" for i in range(50))  # each delivered once

    too_many = {"events": [{"topic": "t"}] * 10_001}
    body = assert_problem(
        await api.http.post("/v1/events", json=too_many), 413, "payload_too_large"
    )
    assert "10001 events" in body["detail"]
    bad = await api.http.post("/v1/events", json={"events": [{"data": {}}]})
    assert assert_problem(bad, 422, "invalid_input")["errors"][0]["field"].endswith("topic")
    not_json = await api.http.post(
        "/v1/events", content=b"{", headers={"content-type": "application/json"}
    )
    assert_problem(not_json, 400, "invalid_input")


async def test_event_ingest_is_rate_limited_per_tenant(api: Api) -> None:
    server = api_server(api.kernel)
    assert server is not None
    limiter = server.app.state.event_limiter  # shrink the tenant's allowance for the test
    limiter.rate, limiter.burst = 10.0, 20
    ok = await api.http.post("/v1/events", json={"events": [{"topic": "t"}] * 15})
    assert ok.status_code == 202
    refused = await api.http.post("/v1/events", json={"events": [{"topic": "t"}] * 15})
    body = assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1 and "retry" in body["detail"]


async def test_processes_page_with_a_cursor_and_filter(api: Api) -> None:
    pids = []
    for i in range(7):
        agent = "greeter" if i % 2 == 0 else "asker"
        body = (
            {"agent": agent, "input": {"name": f"n{i}"}} if agent == "greeter" else {"agent": agent}
        )
        pids.append((await api.http.post("/v1/runs", json=body)).json()["pid"])
    seen: list[int] = []
    url: str | None = "/v1/processes?limit=3"
    pages = 0
    while url:
        page = (await api.http.get(url)).json()
        assert page["count"] == len(page["data"]) <= 3
        seen += [p["pid"] for p in page["data"]]
        url = page["next"]
        pages += 1
    assert seen == sorted(pids, reverse=True) and pages == 3
    greeters = (await api.http.get("/v1/processes", params={"agent": "greeter"})).json()
    assert {p["agent"] for p in greeters["data"]} == {"greeter"} and greeters["count"] == 4
    assert greeters["next"] is None


async def test_every_response_carries_a_request_id(api: Api) -> None:
    echoed = await api.http.get("/v1/agents", headers={"X-Request-ID": "trace-me-42"})
    assert echoed.headers["x-request-id"] == "trace-me-42"
    made = await api.http.get("/v1/processes/424242")  # a problem response too
    assert made.status_code == 404 and len(made.headers["x-request-id"]) == 36
    bad = await api.http.get("/healthz", headers={"X-Request-ID": "no spaces <allowed>"})
    assert bad.headers["x-request-id"] != "no spaces <allowed>"
