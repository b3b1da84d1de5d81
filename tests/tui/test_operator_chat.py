"""The chat's free text goes to the operator agent: a scripted model (langchain-core's fake
chat model, the one allowed stand-in) proposes a governed kill, the console shows it waiting
for approval, the operator approves it from the chat, and the answer follows. Also: the
detail view's checkpoint, the live event stream, and ``/v1/whoami`` in the header."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from textual.widgets import DataTable, Input, Static

from kernos.kernel.events import Event
from kernos.tui.screens import EventsScreen, ProcessDetailScreen, ProcessesScreen

from .conftest import LiveKernel, _free_port
from .test_console import chat_text, header, until

VICTIM = 1
"""The dispatcher the scripted model asks to kill: the first process of a fresh kernel."""


def scripted() -> FakeMessagesListChatModel:
    kill = {
        "name": "kill_process",
        "args": {"pid": VICTIM, "reason": "stuck waiting since this morning"},
        "id": "call-kill",
        "type": "tool_call",
    }
    return FakeMessagesListChatModel(
        responses=[
            AIMessage(content="", tool_calls=[kill]),
            AIMessage(content=f"Done: pid {VICTIM} is killed."),
        ]
    )


@pytest.fixture
async def llm_kernel(kernos_home: Path) -> AsyncIterator[LiveKernel]:
    """A kernel on real time whose agents get the scripted model."""
    live = LiveKernel(home=kernos_home, port=_free_port(), clock=None, llm=scripted())
    await live.start()
    try:
        yield live
    finally:
        await live.stop()


async def test_an_operator_request_proposes_a_governed_kill(llm_kernel: LiveKernel) -> None:
    victim = (await llm_kernel.run("dispatcher"))["pid"]
    assert victim == VICTIM
    await llm_kernel.until(victim, "waiting")
    app = llm_kernel.app(start="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.llm is True, "whoami saying an LLM is there")
        assert "default/admin (admin)" in header(app)
        app.screen.query_one(Input).value = "the dispatcher is stuck, kill it"
        await pilot.press("enter")
        await until(pilot, lambda: "waiting for approval" in chat_text(app), "the proposal")
        text = " ".join(chat_text(app).split())
        assert "kill_process" in text and "stuck waiting since this morning" in text
        # Proposed, not done: the victim still waits, the operator process waits on a human.
        async with llm_kernel.http() as http:
            victim_now = (await http.get(f"/v1/processes/{victim}")).json()
            pending = (await http.get("/v1/approvals")).json()["data"]
        assert victim_now["state"] == "waiting"
        [kill] = [a for a in pending if a["pid"] != victim]
        assert f"/approve {kill['id'][:8]}" in text
        app.screen.query_one(Input).value = "and restart the greeter"  # one request at a time
        await pilot.press("enter")
        await until(pilot, lambda: "still working on your last" in chat_text(app), "a refusal")
        app.screen.query_one(Input).value = f"/approve {kill['id'][:8]} yes, it is stuck"
        await pilot.press("enter")
        await until(pilot, lambda: f"pid {VICTIM} is killed" in chat_text(app), "the answer")
        await llm_kernel.until(victim, "killed")
        assert app.screen.history[-1] == {
            "role": "assistant",
            "content": f"Done: pid {VICTIM} is killed.",
        }
        async with llm_kernel.http() as http:
            records = (await http.get("/v1/audit", params={"pid": kill["pid"]})).json()["data"]
        kinds = {(r["event"], r.get("target")) for r in records}
        requested = [r for r in records if r["event"] == "approval.requested"]
        assert requested and "kill_process" in str(requested[0])
        assert ("syscall.result", "kill_process") in kinds


async def test_the_detail_view_shows_the_checkpoint(llm_kernel: LiveKernel) -> None:
    victim = (await llm_kernel.run("dispatcher"))["pid"]
    await llm_kernel.until(victim, "waiting")
    operator = (
        await llm_kernel.run(
            "operator", {"messages": [{"role": "user", "content": "kill the dispatcher"}]}
        )
    )["pid"]
    await llm_kernel.until(operator, "waiting")
    async with llm_kernel.http() as http:
        state = (await http.get(f"/v1/processes/{operator}/state")).json()
        missing = await http.get("/v1/processes/999/state")
    assert state["next"] == ["tools"] and state["checkpoint_id"]
    assert state["values"]["messages"][0]["data"]["content"] == "kill the dispatcher"
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    app = llm_kernel.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: operator in _pids(app), "the operator process listed")
        assert isinstance(app.screen, ProcessesScreen)
        app.push_screen(ProcessDetailScreen(operator))
        await until(
            pilot,
            lambda: "checkpoint" in _detail(app) and "next tools" in _detail(app),
            "the checkpoint in the detail view",
        )
        text = _detail(app)
        assert "kill the dispatcher" in text and "→ kill_process(" in text


async def test_the_events_screen_follows_the_stream(llm_kernel: LiveKernel) -> None:
    assert llm_kernel.kernel is not None
    bus = llm_kernel.kernel.events
    await bus.publish(Event(topic="bin.full", data={"bin": 7}, tenant="default", source="test"))
    app = llm_kernel.app(start="events")
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, EventsScreen)
        table = app.screen.query_one("#events-table", DataTable)
        await until(pilot, lambda: table.row_count == 1, "the first event")
        await bus.publish(Event(topic="bin.full", data={"bin": 8}, tenant="default", source="test"))
        await until(pilot, lambda: table.row_count == 2, "the second event, live")
        topics = [str(table.get_row_at(i)[2]) for i in range(2)]
        assert topics == ["bin.full", "bin.full"]
        assert '"bin": 8' in str(table.get_row_at(1)[4])
        detail = str(app.screen.query_one("#dlq-detail", Static).render())
        assert '"bin": 8' in detail  # the cursor follows the newest


async def test_whoami_and_event_listing_over_http(llm_kernel: LiveKernel) -> None:
    assert llm_kernel.kernel is not None
    bus = llm_kernel.kernel.events
    for n in range(3):
        await bus.publish(Event(topic=f"t.{n}", data={"n": n}, tenant="default", source="test"))
    async with llm_kernel.http() as http:
        who = (await http.get("/v1/whoami")).json()
        first = (await http.get("/v1/events", params={"limit": 2})).json()
        rest = (await http.get("/v1/events", params={"after": first["data"][0]["seq"]})).json()
        prefixed = (await http.get("/v1/events", params={"topic": "t.1*"})).json()
        bad = await http.get("/v1/events", params={"topic": "t%"})
        anonymous = await http.get("/v1/whoami", headers={"Authorization": ""})
    assert who["principal"] == "default/admin" and who["roles"] == ["admin"]
    assert who["llm"] is True and who["operator_agent"] is True
    assert [e["topic"] for e in first["data"]] == ["t.1", "t.2"]  # newest, oldest first
    assert [e["topic"] for e in rest["data"]] == ["t.2"]
    assert [e["topic"] for e in prefixed["data"]] == ["t.1"]
    assert bad.status_code == 422
    assert anonymous.status_code == 401


def _pids(app: object) -> list[int]:
    from kernos.tui.app import ConsoleApp

    assert isinstance(app, ConsoleApp)
    return [int(p["pid"]) for p in app.processes]


def _detail(app: object) -> str:
    from kernos.tui.app import ConsoleApp

    assert isinstance(app, ConsoleApp)
    try:
        return str(app.screen.query_one("#detail-text", Static).render())
    except Exception:
        return ""
