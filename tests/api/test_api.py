"""The HTTP API over real HTTP: a kernel serving on a free port in the test's event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from pydantic import BaseModel

from kernos.kernel.catalog import AgentBuild, AgentSpec, ToolSpec
from kernos.kernel.errors import EssentialPluginError
from kernos.kernel.governed import ask_human
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.tokens import admin_token_path, read_admin_token
from kernos.policy.service import policy_services

PROBLEM = "application/problem+json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def add(a: int, b: int) -> int:
    return a + b


class Name(BaseModel):
    name: str


class GreetState(TypedDict, total=False):
    name: str
    greeting: str


def build_greeter(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def greet(state: GreetState) -> GreetState:
        return {"greeting": f"Hello, {state['name']}!"}

    graph = StateGraph(GreetState)
    graph.add_node("greet", greet)
    graph.add_edge(START, "greet")
    graph.add_edge("greet", END)
    return graph.compile()


class AskState(TypedDict, total=False):
    depot: Any


def build_asker(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def ask(state: AskState) -> AskState:
        answer = await ask_human("Which depot?")
        return {"depot": answer["value"]}

    graph = StateGraph(AskState)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return graph.compile()


def build_react(build: AgentBuild) -> Any:
    from langgraph.prebuilt import create_react_agent

    return create_react_agent(build.model, build.tools)


class Agents:
    @hookimpl
    def register_tools(self, register):
        register(ToolSpec(name="add", description="Add two integers.", func=add))

    @hookimpl
    def register_agents(self, register):
        register(
            AgentSpec(name="greeter", description="Greets.", build=build_greeter, input_schema=Name)
        )
        register(AgentSpec(name="asker", description="Asks a human.", build=build_asker))
        register(
            AgentSpec(
                name="calc", description="Adds with a tool.", build=build_react, tools=("add",)
            )
        )


def scripted_llm() -> FakeMessagesListChatModel:
    call = {"name": "add", "args": {"a": 20, "b": 22}, "id": "call-1", "type": "tool_call"}
    return FakeMessagesListChatModel(
        responses=[
            AIMessage(content="", tool_calls=[call]),
            AIMessage(
                content="42",
                usage_metadata={"input_tokens": 12, "output_tokens": 2, "total_tokens": 14},
            ),
        ]
    )


@dataclass
class Api:
    kernel: Kernel
    http: httpx.AsyncClient
    base_url: str
    home: Path


async def start_kernel(home: Path, port: int, *, llm: Any = None) -> Kernel:
    settings = load_settings(home=home, api_port=port)
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="test-agents")
    kernel = Kernel(settings, plugins=plugins, llm=llm, serve_api=True)
    await kernel.start()
    return kernel


@pytest.fixture
async def api(kernos_home: Path) -> AsyncIterator[Api]:
    port = free_port()
    kernel = await start_kernel(kernos_home, port, llm=scripted_llm())
    base_url = f"http://127.0.0.1:{port}"
    token = read_admin_token(kernos_home)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
            yield Api(kernel=kernel, http=http, base_url=base_url, home=kernos_home)
    finally:
        await kernel.stop()


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == f"urn:kernos:error:{code}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["instance"] == response.request.url.path
    return body


async def until_state(api: Api, pid: int, *states: str) -> dict[str, Any]:
    for _ in range(600):
        process = (await api.http.get(f"/v1/processes/{pid}")).json()
        if process["state"] in states:
            return process
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} never reached {states}: {process}")


async def test_the_token_is_private_and_required(api: Api) -> None:
    path = admin_token_path(api.home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (await api.http.get("/healthz")).json() == {"status": "ok", "version": "0.1.0"}
    async with httpx.AsyncClient(base_url=api.base_url) as anonymous:
        response = await anonymous.get("/v1/processes")
        body = assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "admin.token" in body["detail"]
        wrong = await anonymous.get(
            "/v1/processes", headers={"Authorization": "Bearer not-the-token"}
        )
        assert_problem(wrong, 401, "unauthenticated")
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        basic = await anonymous.get("/v1/processes", headers={"Authorization": "Basic YTpi"})
        assert_problem(basic, 401, "unauthenticated")


async def test_openapi_describes_the_routes_and_the_bearer_scheme(api: Api) -> None:
    schema = (await api.http.get("/openapi.json")).json()
    assert {
        "/healthz",
        "/v1/runs",
        "/v1/processes",
        "/v1/processes/{pid}",
        "/v1/processes/{pid}/signal",
        "/v1/approvals",
        "/v1/approvals/{approval_id}",
    } <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


async def test_the_token_is_reused_and_a_loose_file_is_narrowed(
    kernos_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    port = free_port()
    kernel = await start_kernel(kernos_home, port)
    await kernel.stop()
    path = admin_token_path(kernos_home)
    first = path.read_text()
    os.chmod(path, 0o644)
    kernel = await start_kernel(kernos_home, port)
    try:
        assert path.read_text() == first
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            ok = await http.get(
                "/v1/processes", headers={"Authorization": f"Bearer {first.strip()}"}
            )
            assert ok.status_code == 200
    finally:
        await kernel.stop()
    assert "narrowed to 0600" in caplog.text
    assert first.strip() not in caplog.text  # the secret never reaches a log line


async def test_run_with_wait_returns_the_finished_process(api: Api) -> None:
    response = await api.http.post(
        "/v1/runs", json={"agent": "calc", "input": {"messages": [["user", "20+22?"]]}, "wait": 30}
    )
    assert response.status_code == 200, response.text
    process = response.json()
    assert process["state"] == "done" and process["owner"] == "admin"
    assert process["output"]["messages"][-1]["data"]["content"] == "42"
    assert process["usage"]["llm_calls"] == 2 and process["usage"]["tool_calls"] == 1
    assert response.headers["location"] == f"/v1/processes/{process['pid']}"
    again = await api.http.get(response.headers["location"])
    assert again.json()["state"] == "done"
    listed = (await api.http.get("/v1/processes", params={"state": "done"})).json()
    assert [p["pid"] for p in listed["data"]] == [process["pid"]] and listed["count"] == 1


async def test_run_without_wait_is_accepted_with_its_location(api: Api) -> None:
    response = await api.http.post("/v1/runs", json={"agent": "greeter", "input": {"name": "Ada"}})
    assert response.status_code == 201, response.text
    process = response.json()
    assert process["state"] in ("pending", "running", "done")
    assert response.headers["location"] == f"/v1/processes/{process['pid']}"
    done = await until_state(api, process["pid"], "done")
    assert done["output"] == {"name": "Ada", "greeting": "Hello, Ada!"}


async def test_a_process_waiting_for_a_human_is_202_then_approved(api: Api) -> None:
    response = await api.http.post("/v1/runs", json={"agent": "asker", "wait": 30})
    assert response.status_code == 202, response.text
    process = response.json()
    assert (process["state"], process["waiting_on"]) == ("waiting", "human")
    assert response.headers["location"] == f"/v1/processes/{process['pid']}"
    pending = (await api.http.get("/v1/approvals")).json()
    assert pending["count"] == 1
    [approval] = pending["data"]
    assert approval["question"] == "Which depot?" and approval["pid"] == process["pid"]
    decided = await api.http.post(
        f"/v1/approvals/{approval['id']}",
        json={"approved": True, "value": "north", "comment": "open today"},
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    assert decided.json()["decided_by"] == "default/admin"
    done = await until_state(api, process["pid"], "done", "failed")
    assert done["output"] == {"depot": "north"}, done
    assert (await api.http.get("/v1/approvals")).json() == {"data": [], "count": 0}
    everything = (await api.http.get("/v1/approvals", params={"status": "all"})).json()
    assert [a["status"] for a in everything["data"]] == ["approved"]
    twice = await api.http.post(f"/v1/approvals/{approval['id']}", json={"approved": False})
    assert_problem(twice, 409, "conflict")


async def test_signals_kill_and_refuse_the_wrong_state(api: Api) -> None:
    process = (await api.http.post("/v1/runs", json={"agent": "asker", "wait": 30})).json()
    pid = process["pid"]
    resumed = await api.http.post(f"/v1/processes/{pid}/signal", json={"signal": "resume"})
    assert "not suspended" in assert_problem(resumed, 409, "conflict")["detail"]
    killed = await api.http.post(f"/v1/processes/{pid}/signal", json={"signal": "kill"})
    assert killed.status_code == 200, killed.text
    assert killed.json()["state"] == "killed"
    again = await api.http.post(f"/v1/processes/{pid}/signal", json={"signal": "kill"})
    assert again.status_code == 200 and again.json()["state"] == "killed"  # idempotent
    suspended = await api.http.post(f"/v1/processes/{pid}/signal", json={"signal": "suspend"})
    assert_problem(suspended, 409, "conflict")
    bogus = await api.http.post(f"/v1/processes/{pid}/signal", json={"signal": "stop"})
    body = assert_problem(bogus, 422, "invalid_input")
    assert body["errors"][0]["field"] == "body.signal"


async def test_bad_requests_are_problems(api: Api) -> None:
    unknown = await api.http.post("/v1/runs", json={"agent": "nope"})
    assert "no agent named 'nope'" in assert_problem(unknown, 404, "not_found")["detail"]
    schema = await api.http.post("/v1/runs", json={"agent": "greeter", "input": {"nom": "Ada"}})
    assert "name: Field required" in assert_problem(schema, 400, "invalid_input")["detail"]
    too_long = await api.http.post("/v1/runs", json={"agent": "greeter", "wait": 301})
    body = assert_problem(too_long, 422, "invalid_input")
    assert [e["field"] for e in body["errors"]] == ["body.wait"]
    typo = await api.http.post("/v1/runs", json={"agent": "greeter", "priorty": 3})
    assert [e["field"] for e in assert_problem(typo, 422, "invalid_input")["errors"]] == [
        "body.priorty"
    ]
    not_json = await api.http.post(
        "/v1/runs", content=b"{bad", headers={"content-type": "application/json"}
    )
    assert_problem(not_json, 422, "invalid_input")
    assert_problem(await api.http.get("/v1/processes/999"), 404, "not_found")
    assert_problem(await api.http.get("/v1/processes/abc"), 422, "invalid_input")
    assert_problem(await api.http.get("/v1/processes?state=sleeping"), 422, "invalid_input")
    assert_problem(
        await api.http.post("/v1/processes/999/signal", json={"signal": "kill"}), 404, "not_found"
    )
    assert_problem(
        await api.http.post("/v1/approvals/missing", json={"approved": True}), 404, "not_found"
    )
    assert_problem(
        await api.http.post("/v1/approvals/missing", json={"approved": "yes"}),
        422,
        "invalid_input",
    )
    route = await api.http.get("/v2/everything")
    assert "no route GET /v2/everything" in assert_problem(route, 404, "not_found")["detail"]
    assert_problem(await api.http.delete("/v1/runs"), 405, "method_not_allowed")
    assert (await api.http.get("/v1/processes")).json() == {"data": [], "count": 0, "next": None}


async def test_another_tenants_process_is_not_found(api: Api) -> None:
    await api.kernel.identity.ensure_tenant("acme")
    alice = await api.kernel.identity.ensure_principal("acme", "alice", kind=PrincipalKind.PERSON)
    await policy_services(api.kernel).engine.grant_role("alice", "operator", "acme")
    theirs = await api.kernel.processes.spawn("greeter", {"name": "Bo"}, principal=alice)
    run = {"agent": "greeter", "input": {"name": "A"}}
    mine = (await api.http.post("/v1/runs", json=run)).json()
    assert_problem(await api.http.get(f"/v1/processes/{theirs.pid}"), 404, "not_found")
    signal = await api.http.post(f"/v1/processes/{theirs.pid}/signal", json={"signal": "kill"})
    assert_problem(signal, 404, "not_found")
    listed = (await api.http.get("/v1/processes")).json()
    assert [p["pid"] for p in listed["data"]] == [mine["pid"]]


async def test_a_port_in_use_fails_startup_with_one_clear_line(api: Api, tmp_path: Path) -> None:
    port = int(api.base_url.rsplit(":", 1)[1])
    with pytest.raises(EssentialPluginError) as failure:
        await start_kernel(tmp_path / "other-home", port)
    assert str(failure.value.__cause__) == (
        f"cannot listen on 127.0.0.1:{port}: address already in use; "
        "set KERNOS_API_PORT or stop the other server"
    )
    assert (await api.http.get("/healthz")).status_code == 200  # the first one still serves


async def test_stopping_the_kernel_frees_the_port(kernos_home: Path) -> None:
    port = free_port()
    kernel = await start_kernel(kernos_home, port)
    await kernel.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/healthz")
    kernel = await start_kernel(kernos_home, port)  # and it can be bound again at once
    await kernel.stop()


async def test_the_dead_letter_queue_over_http(kernos_home: Path) -> None:
    from kernos.kernel.events import Event

    port = free_port()
    settings = load_settings(home=kernos_home, api_port=port, event_max_attempts=1)
    kernel = Kernel(settings, plugins=PluginManager(entry_points=False), serve_api=True)
    await kernel.start()
    calls: list[str] = []

    async def flaky(event: Event) -> None:
        calls.append(event.id)
        if len(calls) == 1:
            raise ConnectionError("routing service down")

    try:
        kernel.events.subscribe("sensor.#", flaky, name="router")
        await kernel.events.publish(
            Event(id="e1", topic="sensor.bin.alarm", tenant="default", source="test", data={})
        )
        await kernel.events.drain()
        headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
        ) as http:
            page = (await http.get("/v1/events/dlq")).json()
            [dead] = page["data"]
            assert (dead["subscriber"], dead["event"]["id"]) == ("handler:router", "e1")
            assert "routing service down" in dead["error"]
            replayed = await http.post(f"/v1/events/dlq/{dead['id']}/replay")
            assert replayed.status_code == 200, replayed.text
            await kernel.events.drain()
            assert calls == ["e1", "e1"]
            assert (await http.get("/v1/events/dlq")).json()["count"] == 0
            again = await http.post(f"/v1/events/dlq/{dead['id']}/replay")
            assert_problem(again, 409, "conflict")
            missing = await http.post("/v1/events/dlq/999/replay")
            assert_problem(missing, 404, "not_found")
    finally:
        await kernel.stop()
