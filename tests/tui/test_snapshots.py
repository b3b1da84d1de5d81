"""SVG snapshots of every screen at 100x30 and 80x24, against a kernel whose clock stands
still (fixed timestamps) and a console clock 42 s later (fixed ages). Approval ids and the
port are random, so they are replaced before comparing. ``pytest --snapshot-update``
rewrites the files; docs/console.md shows them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Static

from kernos.tui.app import ConsoleApp
from kernos.tui.widgets import ConsoleHeader, ProcessTable

from .conftest import LiveKernel, frozen_now
from .test_console import until

SIZES = [pytest.param((100, 30), id="100x30"), pytest.param((80, 24), id="80x24")]


async def scene(kernel: LiveKernel) -> dict[str, Any]:
    """A finished greeter and a dispatcher waiting for an approval."""
    done = await kernel.run("greeter", {"name": "Ada"})
    await kernel.until(done["pid"], "done")
    waiting = await kernel.run("dispatcher")
    await kernel.until(waiting["pid"], "waiting")
    async with kernel.http() as http:
        [approval] = (await http.get("/v1/approvals")).json()["data"]
    return approval


def screenshot(app: ConsoleApp, kernel: LiveKernel, approval: dict[str, Any]) -> str:
    svg = app.export_screenshot(title="Kernos console")
    zeros = "00000000-0000-4000-8000-000000000000"
    # Longest first: a narrow column may cut the id anywhere (the events screen's DATA).
    for length in range(len(approval["id"]), 7, -1):
        svg = svg.replace(approval["id"][:length], zeros[:length])
    svg = re.sub(r"key_[0-9a-f]{12}", "key_000000000000", svg)  # the admin key's random id
    return svg.replace(f"127.0.0.1:{kernel.port}", "127.0.0.1:8787")


async def settle(pilot: Any, app: ConsoleApp) -> None:
    await until(
        pilot, lambda: "pending" in str(app.screen.query_one(ConsoleHeader).render()), "data"
    )
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("start", ["processes", "approvals", "chat", "events", "metrics"])
async def test_screen(frozen_kernel, svg_snapshot, size, start) -> None:
    approval = await scene(frozen_kernel)
    # Metrics: one scrape only (a rate needs two, and real latencies would move the picture).
    refresh = 3600 if start == "metrics" else 0.3
    app = frozen_kernel.app(now=frozen_now, start=start, refresh_seconds=refresh)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        if start == "processes":
            await until(pilot, lambda: app.screen.query_one(ProcessTable).row_count == 2, "rows")
        if start == "chat":
            app.screen.query_one(Input).value = "/help"
            await pilot.press("enter")
            app.screen.query_one(Input).value = "show me the trucks"
            await pilot.press("enter")
            await pilot.pause(0.3)
        assert svg_snapshot == screenshot(app, frozen_kernel, approval)


async def test_process_detail(frozen_kernel, svg_snapshot) -> None:
    approval = await scene(frozen_kernel)
    app = frozen_kernel.app(now=frozen_now)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("down", "enter")  # the finished greeter (second row)
        audit = app.screen.query_one("#detail-audit", DataTable)
        await until(pilot, lambda: audit.row_count > 0, "the timeline")
        await pilot.pause(0.3)
        assert svg_snapshot == screenshot(app, frozen_kernel, approval)


async def test_audit_after_verify(frozen_kernel, svg_snapshot) -> None:
    approval = await scene(frozen_kernel)
    app = frozen_kernel.app(now=frozen_now, start="audit")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("v")
        line = app.screen.query_one("#audit-verify", Static)
        await until(pilot, lambda: "chain intact" in str(line.render()), "verify")
        await pilot.pause(0.3)
        assert svg_snapshot == screenshot(app, frozen_kernel, approval)


async def test_help_and_kill_confirmation(frozen_kernel, svg_snapshot) -> None:
    approval = await scene(frozen_kernel)
    app = frozen_kernel.app(now=frozen_now)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        assert svg_snapshot(name="help") == screenshot(app, frozen_kernel, approval)
        await pilot.press("escape", "k")
        await pilot.pause(0.2)
        assert svg_snapshot(name="kill") == screenshot(app, frozen_kernel, approval)


async def test_disconnected(frozen_kernel, svg_snapshot) -> None:
    approval = await scene(frozen_kernel)
    app = frozen_kernel.app(now=frozen_now)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await frozen_kernel.stop()
        await until(pilot, lambda: app.connected is False, "the outage")
        await pilot.pause(0.3)
        assert svg_snapshot == screenshot(app, frozen_kernel, approval)
