"""Raising a run's priority above its agent's default is an admin's call: the LLM scheduler
serves higher priorities first, across tenants."""

from __future__ import annotations

from tests.api.test_api import Api, api, assert_problem  # api: the fixture

__all__ = ["api"]


async def test_only_admins_raise_priority(api: Api) -> None:
    created = await api.http.post("/v1/keys", json={"principal": "otto", "role": "operator"})
    operator = {"Authorization": f"Bearer {created.json()['token']}"}
    run = {"agent": "greeter", "input": {"name": "P"}}
    raised = await api.http.post("/v1/runs", json={**run, "priority": 5}, headers=operator)
    assert_problem(raised, 403, "policy_denied")
    lowered = await api.http.post("/v1/runs", json={**run, "priority": -5}, headers=operator)
    assert lowered.status_code == 201, lowered.text
    assert lowered.json()["priority"] == -5
    as_admin = await api.http.post("/v1/runs", json={**run, "priority": 5})
    assert as_admin.status_code == 201, as_admin.text
    assert as_admin.json()["priority"] == 5
