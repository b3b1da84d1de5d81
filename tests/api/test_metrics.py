"""``GET /metrics``: Prometheus text that Prometheus's own parser reads, authorized, per tenant."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.test_api import Api, api, assert_problem, until_state  # api: the fixture

__all__ = ["api"]


async def scrape(http: httpx.AsyncClient, **kwargs: object) -> dict[str, object]:
    response = await http.get("/metrics", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


async def test_metrics_parse_and_count_what_happened(api: Api) -> None:
    created = await api.http.post("/v1/runs", json={"agent": "calc", "wait": 30})
    assert created.json()["state"] == "done", created.text
    families = await scrape(api.http)

    syscalls = families["kernos_syscalls"]
    assert syscalls.type == "counter"
    by_kind = {
        s.labels["kernos_syscall_kind"]: s.value
        for s in syscalls.samples
        if s.name == "kernos_syscalls_total" and s.labels["outcome"] == "ok"
    }
    assert by_kind["llm.chat"] == 2 and by_kind["tool.call"] == 1

    duration = families["kernos_syscall_duration_seconds"]
    assert duration.type == "histogram"
    llm = [s for s in duration.samples if s.labels.get("kernos_syscall_kind") == "llm.chat"]
    buckets = [s.value for s in llm if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == 2  # cumulative, +Inf = count
    assert [s.value for s in llm if s.name.endswith("_count")] == [2]

    tokens = families["gen_ai_client_token_usage"]
    assert any(s.labels.get("gen_ai_token_type") == "output" for s in tokens.samples)

    processes = {s.labels["state"]: s.value for s in families["kernos_processes"].samples}
    assert processes["done"] == 1 and processes["running"] == 0


async def test_metrics_need_a_key_that_may_read_them(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as anonymous:
        assert_problem(await anonymous.get("/metrics"), 401, "unauthenticated")
    forwarder = await api.http.post("/v1/keys", json={"principal": "edge", "role": "forwarder"})
    token = forwarder.json()["token"]
    denied = await api.http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert_problem(denied, 403, "policy_denied")


async def test_process_counts_are_the_callers_tenant(api: Api) -> None:
    created = await api.http.post("/v1/runs", json={"agent": "greeter", "input": {"name": "A"}})
    await until_state(api, created.json()["pid"], "done")
    other = await api.http.post(
        "/v1/keys", json={"principal": "olga", "role": "viewer", "tenant": "other"}
    )
    headers = {"Authorization": f"Bearer {other.json()['token']}"}
    theirs = await scrape(api.http, headers=headers)
    assert {s.value for s in theirs["kernos_processes"].samples} == {0}
    mine = await scrape(api.http)
    assert {s.labels["state"]: s.value for s in mine["kernos_processes"].samples}["done"] == 1
