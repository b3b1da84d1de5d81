"""The console against a real kernel over HTTP, driven with Textual's pilot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from click.testing import CliRunner
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, RichLog, Static

from kernos.kernel.events import Event
from kernos.tui.app import ConsoleApp
from kernos.tui.dialogs import CommandLine, CommentDialog, ConfirmDialog, HelpScreen
from kernos.tui.screens import (
    ApprovalsScreen,
    AuditScreen,
    ChatScreen,
    EventsScreen,
    MetricsScreen,
    ProcessDetailScreen,
    ProcessesScreen,
)
from kernos.tui.slash import NO_LLM_MESSAGE
from kernos.tui.widgets import ConnectionBanner, ConsoleHeader, ProcessTable


async def until(pilot: Pilot[Any], check: Callable[[], bool], what: str) -> None:
    """Let the app run until ``check()`` holds (up to 15 s)."""
    for _ in range(300):
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never happened: {what}")


def table_pids(app: ConsoleApp) -> list[int]:
    return [int(str(k.value)) for k in app.screen.query_one(ProcessTable).rows]


def header(app: ConsoleApp) -> str:
    return str(app.screen.query_one(ConsoleHeader).render())


def chat_text(app: ConsoleApp) -> str:
    return "\n".join(line.text for line in app.screen.query_one(RichLog).lines)


async def test_the_table_shows_processes_and_the_header_who_and_where(live_kernel) -> None:
    first = await live_kernel.run("greeter")
    await live_kernel.until(first["pid"], "done")
    app = live_kernel.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: table_pids(app) == [first["pid"]], "the table fills")
        text = header(app)
        assert "● connected" in text and live_kernel.url in text
        assert "default/admin" in text
        assert "pending" not in text  # no approval yet: no badge
        asker = await live_kernel.run("dispatcher")
        await until(pilot, lambda: "1 pending" in header(app), "the badge appears")
        assert table_pids(app) == [asker["pid"], first["pid"]]  # newest first, live


async def test_filter_and_sort_the_table(live_kernel) -> None:
    pids = [(await live_kernel.run(agent))["pid"] for agent in ("greeter", "dispatcher")]
    await live_kernel.until(pids[1], "waiting")
    app = live_kernel.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: len(table_pids(app)) == 2, "both processes shown")
        await pilot.press("slash", *"dispatch")
        assert table_pids(app) == [pids[1]]
        summary = str(app.screen.query_one("#process-summary", Static).render())
        assert "filter 'dispatch': 1 shown" in summary
        await pilot.press("enter")  # keeps the filter, back to the table
        assert app.focused is app.screen.query_one(ProcessTable)
        assert table_pids(app) == [pids[1]]
        await pilot.press("slash", "escape")  # clears it
        assert table_pids(app) == [pids[1], pids[0]]
        await pilot.press("i")  # invert: oldest first
        assert table_pids(app) == [pids[0], pids[1]]
        await pilot.press("greater_than_sign")  # sort by agent
        assert app.screen.query_one(ProcessTable).sort_column == "agent"
        assert table_pids(app) == [pids[1], pids[0]]  # dispatcher before greeter


async def test_kill_asks_first_and_then_kills(live_kernel) -> None:
    pid = (await live_kernel.run("dispatcher"))["pid"]
    await live_kernel.until(pid, "waiting")
    app = live_kernel.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: table_pids(app) == [pid], "the table fills")
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("enter")  # the focused button is "No"
        assert isinstance(app.screen, ProcessesScreen)
        assert (await live_kernel.until(pid, "waiting"))["state"] == "waiting"
        await pilot.press("k", "y")
        await live_kernel.until(pid, "killed")
        await until(
            pilot,
            lambda: "killed" in str(app.screen.query_one(ProcessTable).get_row(str(pid))),
            "the table shows the kill",
        )


async def test_suspend_and_resume(live_kernel) -> None:
    pid = (await live_kernel.run("dispatcher"))["pid"]
    await live_kernel.until(pid, "waiting")
    app = live_kernel.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: table_pids(app) == [pid], "the table fills")
        await pilot.press("s")
        await live_kernel.until(pid, "suspended")
        await pilot.press("r")
        await live_kernel.until(pid, "waiting")


async def test_approving_resumes_the_process(live_kernel) -> None:
    pid = (await live_kernel.run("dispatcher"))["pid"]
    await live_kernel.until(pid, "waiting")
    app = live_kernel.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "1 pending" in header(app), "the badge")
        await pilot.press("2")
        assert isinstance(app.screen, ApprovalsScreen)
        await until(
            pilot,
            lambda: "Send 3 trucks" in str(app.screen.query_one("#approval-text").render()),
            "the approval's context",
        )
        await pilot.press("a")
        assert isinstance(app.screen, CommentDialog)
        await pilot.press(*"go", "enter")
        done = await live_kernel.until(pid, "done")
        assert done["output"]["depot"] is True
        await until(pilot, lambda: "pending" not in header(app), "the badge goes")
    async with live_kernel.http() as http:
        [decided] = (await http.get("/v1/approvals", params={"status": "all"})).json()["data"]
    assert (decided["status"], decided["comment"], decided["decided_by"]) == (
        "approved",
        "go",
        "default/admin",
    )


async def test_denying_with_escape_decides_nothing_then_deny(live_kernel) -> None:
    pid = (await live_kernel.run("dispatcher"))["pid"]
    await live_kernel.until(pid, "waiting")
    app = live_kernel.app(start="approvals")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.screen.query_one(DataTable).row_count == 1, "a row")
        await pilot.press("d", "escape")
        assert isinstance(app.screen, ApprovalsScreen)
        await pilot.press("d", "enter")
        done = await live_kernel.until(pid, "done")
        assert done["output"]["depot"] is False


async def test_detail_view_shows_the_process_and_its_audit_records(live_kernel) -> None:
    pid = (await live_kernel.run("greeter", {"name": "Ada"}))["pid"]
    await live_kernel.until(pid, "done")
    app = live_kernel.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: table_pids(app) == [pid], "the table fills")
        await pilot.press("enter")
        assert isinstance(app.screen, ProcessDetailScreen)
        audit = app.screen.query_one("#detail-audit", DataTable)
        await until(pilot, lambda: audit.row_count > 0, "the timeline")
        events = {str(audit.get_row_at(i)[2]) for i in range(audit.row_count)}
        assert any(e.startswith("process.") for e in events), events
        text = str(app.screen.query_one("#detail-text", Static).render())
        assert "Hello, Ada!" in text and "state     done" in text
        await pilot.press("escape")
        assert isinstance(app.screen, ProcessesScreen)


async def test_slash_commands_and_free_text_in_the_chat(live_kernel) -> None:
    waiting = (await live_kernel.run("dispatcher"))["pid"]
    await live_kernel.until(waiting, "waiting")
    app = live_kernel.app(start="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, ChatScreen)
        prompt = app.screen.query_one(Input)
        await until(pilot, lambda: bool(app.screen.agents), "agent names for completion")
        await until(pilot, lambda: app.llm is False, "the kernel saying it has no LLM")
        await pilot.press(*"/sp")
        await until(pilot, lambda: prompt._suggestion == "/spawn", "a suggestion")
        await pilot.press("tab", "space", *"gre")
        await until(pilot, lambda: prompt._suggestion == "/spawn greeter", "the agent")
        await pilot.press("tab", "enter")
        await until(pilot, lambda: "started pid" in chat_text(app), "the spawn reply")
        spawned = waiting + 1
        await live_kernel.until(spawned, "done")
        for line in ("/ps", "/help", "what is running?", f"/kill {waiting}", "/bogus"):
            prompt.value = line
            await pilot.press("enter")
        await until(pilot, lambda: "unknown command /bogus" in chat_text(app), "all replies")
        text = chat_text(app)
        assert f"{spawned}  greeter" in text  # /ps
        assert "/spawn AGENT [JSON]" in text  # /help
        assert " ".join(NO_LLM_MESSAGE.split()[:6]) in " ".join(text.split())
        await live_kernel.until(waiting, "killed")


async def test_approve_from_the_chat_with_an_id_prefix(live_kernel) -> None:
    pid = (await live_kernel.run("dispatcher"))["pid"]
    await live_kernel.until(pid, "waiting")
    async with live_kernel.http() as http:
        [approval] = (await http.get("/v1/approvals")).json()["data"]
    app = live_kernel.app(start="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        app.screen.query_one(Input).value = f"/approve {approval['id'][:6]} looks fine"
        await pilot.press("enter")
        await until(pilot, lambda: "approved (pid" in chat_text(app), "the reply")
        await live_kernel.until(pid, "done")


async def test_command_mode_help_and_palette(live_kernel) -> None:
    app = live_kernel.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("colon")
        assert isinstance(app.screen, CommandLine)
        await pilot.press(*"aud", "tab", "enter")
        assert isinstance(app.screen, AuditScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = str(app.screen.query(Static).last().render())
        assert "v          verify" in keys and "command mode" in keys
        await pilot.press("escape", "ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"Go to Approvals")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen), "the palette")
        await pilot.press("colon", *"dlq", "enter")
        assert isinstance(app.screen, EventsScreen)
        await pilot.press("colon", *"nonsense", "enter")
        assert isinstance(app.screen, EventsScreen)
        await pilot.press("6")
        assert isinstance(app.screen, MetricsScreen)
        await pilot.press("colon", "q", "enter")
    assert app.return_code == 0


async def test_audit_tail_and_verify(live_kernel) -> None:
    pid = (await live_kernel.run("greeter"))["pid"]
    await live_kernel.until(pid, "done")
    app = live_kernel.app(start="audit")
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one("#audit-table", DataTable)
        await until(pilot, lambda: table.row_count > 0, "records")
        before = table.row_count
        second = (await live_kernel.run("greeter"))["pid"]
        await live_kernel.until(second, "done")
        await until(pilot, lambda: table.row_count > before, "the tail grows")
        await pilot.press("slash", *"process.done")
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert [(str(r[3]), str(r[4])) for r in rows] == [
            (str(pid), "process.done"),
            (str(second), "process.done"),
        ]
        await pilot.press("escape", "v")
        line = app.screen.query_one("#audit-verify", Static)
        await until(pilot, lambda: "chain intact" in str(line.render()), "verify's result")


async def test_dead_letters_are_listed_and_replayed(live_kernel) -> None:
    calls: list[str] = []

    async def flaky(event: Event) -> None:
        calls.append(event.id)
        if len(calls) == 1:
            raise ConnectionError("routing service down")

    kernel = live_kernel.kernel
    kernel.events.subscribe("sensor.#", flaky, name="router")
    await kernel.events.publish(
        Event(id="e1", topic="sensor.bin.alarm", tenant="default", source="test", data={})
    )
    await kernel.events.drain()
    app = live_kernel.app(start="events")
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one("#dlq-table", DataTable)
        await until(pilot, lambda: table.row_count == 1, "the dead letter")
        assert "routing service down" in str(table.get_row_at(0)[5])
        await pilot.press("r")
        await until(pilot, lambda: table.row_count == 0, "the queue empties")
        await kernel.events.drain()
        assert calls == ["e1", "e1"]


async def test_the_console_survives_the_kernel_going_away(live_kernel) -> None:
    pid = (await live_kernel.run("greeter"))["pid"]
    await live_kernel.until(pid, "done")
    app = live_kernel.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: table_pids(app) == [pid], "the table fills")
        banner = app.screen.query_one(ConnectionBanner)
        assert not banner.display
        await live_kernel.stop()
        await until(pilot, lambda: "disconnected" in header(app), "the header says so")
        assert banner.display and "Showing the last data" in str(banner.render())
        assert table_pids(app) == [pid]  # the last data stay, labelled stale
        await pilot.press("4", "v")  # a call while away is reported, not a crash
        await until(
            pilot,
            lambda: "verify failed" in str(app.screen.query_one("#audit-verify").render()),
            "verify reports the outage",
        )
        await pilot.press("1")
        await live_kernel.start()
        await until(pilot, lambda: "● connected" in header(app), "it reconnects")
        assert not app.screen.query_one(ConnectionBanner).display


async def test_metrics_screen_scrapes(live_kernel) -> None:
    pid = (await live_kernel.run("greeter"))["pid"]
    await live_kernel.until(pid, "done")
    app = live_kernel.app(start="metrics")
    async with app.run_test(size=(100, 30)) as pilot:
        note = app.screen.query_one("#metrics-note", Static)
        await until(pilot, lambda: "last 1 intervals of" in str(note.render()), "two scrapes")
        assert "syscall latency p95" in str(app.screen.query_one("#label-p95").render())


def test_kernos_console_is_a_cli_command() -> None:
    from kernos.kernel.cli import cli

    result = CliRunner().invoke(cli, ["--help"])
    assert "console" in result.output and "Open the operator console." in result.output
    result = CliRunner().invoke(cli, ["console", "--help"])
    assert result.exit_code == 0 and "--url" in result.output and "--token" in result.output
