"""Server-sent event streams over real HTTP: a process's records until it ends, resumable."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.api.test_api import Api, api  # the fixture

__all__ = ["api"]


async def read_events(http: httpx.AsyncClient, url: str, **kwargs: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with http.stream("GET", url, timeout=30, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and current:
                events.append(current)
                current = {}
    return events


async def test_a_process_stream_ends_with_the_process_and_resumes(api: Api) -> None:
    run = await api.http.post(
        "/v1/runs", json={"agent": "calc", "input": {"messages": [["user", "20+22?"]]}}
    )
    pid = run.json()["pid"]
    events = await read_events(api.http, f"/v1/processes/{pid}/events")
    names = [e["event"] for e in events]
    assert names[0] == "process.spawned" and names[-1] == "process.done"
    assert {"syscall.intent", "syscall.result"} <= set(names)
    assert all(e["data"]["pid"] == pid for e in events)
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    middle = events[2]["id"]
    resumed = await read_events(
        api.http, f"/v1/processes/{pid}/events", headers={"Last-Event-ID": str(middle)}
    )
    assert [e["id"] for e in resumed] == [e["id"] for e in events if e["id"] > middle]
    other = await api.http.get("/v1/processes/999999/events")
    assert other.status_code == 404


async def test_the_tenant_stream_starts_now_and_follows_new_records(api: Api) -> None:
    before = await api.http.post(
        "/v1/runs", json={"agent": "greeter", "input": {"name": "A"}, "wait": 10}
    )
    assert before.json()["state"] == "done"
    seen: list[str] = []
    async with api.http.stream("GET", "/v1/stream", timeout=30) as response:
        assert response.status_code == 200
        run = await api.http.post("/v1/runs", json={"agent": "greeter", "input": {"name": "B"}})
        pid = run.json()["pid"]
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                record = json.loads(line[6:])
                assert record["pid"] == pid  # nothing from before the stream opened
                seen.append(record["event"])
                if record["event"] == "process.done":
                    break
    assert seen[0] == "process.spawned" and seen[-1] == "process.done"
