"""Processes: a live ``top``-like table with suspend, resume and kill, and a detail view with
the process's fields and its audit records (its syscall timeline)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Static

from kernos.kernel.errors import KernosError
from kernos.tui.dialogs import ConfirmDialog
from kernos.tui.formatting import age, clock_time, state_text, tokens
from kernos.tui.screens.base import ConsoleScreen
from kernos.tui.widgets import FilterBar, ProcessTable


class ProcessesScreen(ConsoleScreen):
    """The process table (``1``)."""

    TITLE = "Processes"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "filter", key_display="/"),
        Binding("s", "signal('suspend')", "suspend"),
        Binding("r", "signal('resume')", "resume"),
        Binding("k", "kill", "kill"),
        Binding("enter", "open", "detail view", show=False),
    ]
    HELP = "  < >        sort by the previous/next column    i  invert the sort"

    def body(self) -> Iterable[Widget]:
        """The table, its summary line and the filter bar."""
        yield ProcessTable(id="process-table")
        yield Static(id="process-summary", classes="summary")
        yield FilterBar(id="process-filter")

    def on_mount(self) -> None:
        """Fill the table from the app's polls."""
        table = self.query_one(ProcessTable)
        table.now = self.console.now
        self.query_one(FilterBar).display = False
        self.watch_app("processes", self._show)
        table.focus()

    def _show(self, processes: list[dict[str, Any]]) -> None:
        table = self.query_one(ProcessTable)
        table.show(processes)
        self._summarize()

    def _summarize(self) -> None:
        table = self.query_one(ProcessTable)
        states: dict[str, int] = {}
        for process in table.rows_data:
            states[process["state"]] = states.get(process["state"], 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
        shown = len(table.shown)
        note = f"  filter {table.filter_text!r}: {shown} shown" if table.filter_text else ""
        self.query_one("#process-summary", Static).update(
            f"{len(table.rows_data)} processes ({counts}); sorted by {table.sort_column}{note}"
        )

    def on_filter_bar_filter_changed(self, event: FilterBar.FilterChanged) -> None:
        """Refilter as the operator types."""
        self.query_one(ProcessTable).set_filter(event.text)
        self._summarize()

    def on_process_table_process_selected(self, event: ProcessTable.ProcessSelected) -> None:
        """Open the detail view."""
        self.app.push_screen(ProcessDetailScreen(event.pid))

    def action_filter(self) -> None:
        """``/``: open the filter line."""
        self.query_one(FilterBar).open()

    def action_open(self) -> None:
        """``enter``: the detail view of the selected process."""
        pid = self.query_one(ProcessTable).selected_pid()
        if pid is not None:
            self.app.push_screen(ProcessDetailScreen(pid))

    def action_signal(self, signal: str) -> None:
        """``s``/``r``: suspend or resume the selected process."""
        pid = self.query_one(ProcessTable).selected_pid()
        if pid is not None:
            self.send_signal(pid, signal)

    def action_kill(self) -> None:
        """``k``: kill the selected process, after a confirmation."""
        pid = self.query_one(ProcessTable).selected_pid()
        if pid is None:
            return
        rows = self.query_one(ProcessTable).rows_data
        agent = next((p["agent"] for p in rows if p["pid"] == pid), "?")

        def answered(yes: bool | None) -> None:
            if yes:
                self.send_signal(pid, "kill")

        self.app.push_screen(ConfirmDialog(f"Kill pid {pid} ({agent}) and its children?"), answered)

    @work(group="signal")
    async def send_signal(self, pid: int, signal: str) -> None:
        """Send ``signal`` to ``pid`` and poll again."""
        try:
            process = await self.console.client.signal(pid, signal)
        except KernosError as exc:
            self.report(exc)
            return
        self.notify(f"pid {pid}: {signal} sent, now {state_text(process)}")
        self.console.refresh_now()


class ProcessDetailScreen(ConsoleScreen):
    """One process: its fields, usage and budgets, and its audit records (the syscall
    timeline: intents, results, denials, approvals, state changes). ``escape`` goes back."""

    TITLE = "Process"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "back"),
        Binding("s", "signal('suspend')", "suspend"),
        Binding("r", "signal('resume')", "resume"),
        Binding("k", "kill", "kill"),
    ]

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid

    @property
    def heading(self) -> str:
        """``Process PID``."""
        return f"Process {self.pid}"

    def reload(self, _value: object = None) -> None:
        """Reload on every poll of the app."""
        self.load()

    def body(self) -> Iterable[Widget]:
        """Fields on the left, the timeline on the right."""
        with Horizontal(id="detail"):
            with VerticalScroll(id="detail-fields"):
                yield Static("loading…", id="detail-text")
            table: DataTable[str] = DataTable(id="detail-audit", cursor_type="row")
            yield table

    def on_mount(self) -> None:
        """Load now and follow the app's polls."""
        table = self.query_one("#detail-audit", DataTable)
        table.add_columns("SEQ", "TIME", "EVENT", "TARGET", "DECISION")
        self.load()
        self.watch(self.app, "processes", self.reload, init=False)

    @work(exclusive=True, group="detail")
    async def load(self) -> None:
        """Read the process and its audit records."""
        client = self.console.client
        try:
            process = await client.process(self.pid)
            records = await client.audit(pid=self.pid, limit=200)
            state = await client.process_state(self.pid)
        except KernosError as exc:
            self.query_one("#detail-text", Static).update(f"[red]{exc}[/red]")
            return
        text = self._describe(process) + "\n\n" + checkpoint_text(state)
        self.query_one("#detail-text", Static).update(text)
        table = self.query_one("#detail-audit", DataTable)
        table.clear()
        for record in records:
            table.add_row(
                str(record["seq"]),
                clock_time(record.get("ts")),
                str(record.get("event", "")),
                str(record.get("target") or record.get("kind") or ""),
                str(record.get("decision") or ""),
                key=str(record["seq"]),
            )

    def _describe(self, p: dict[str, Any]) -> str:
        usage = p.get("usage") or {}
        budgets = p.get("budgets") or {}
        limits = ", ".join(f"{k} {v}" for k, v in budgets.items() if v is not None) or "none"
        lines = [
            f"[b]pid {p['pid']}[/b]  {p['agent']}@{p.get('agent_version', '')}",
            f"state     {state_text(p)}",
            f"tenant    {p['tenant']}   owner {p['owner']}",
            f"parent    {p.get('parent_pid') or '-'}   priority {p['priority']}",
            f"age       {age(p.get('created_at'), self.console.now())}   steps {p.get('steps', 0)}",
            f"tokens    {tokens(p)} ({usage.get('input_tokens', 0)} in, "
            f"{usage.get('output_tokens', 0)} out)",
            f"calls     {usage.get('llm_calls', 0)} llm, {usage.get('tool_calls', 0)} tool",
            f"cost      {float(usage.get('cost', 0.0)):.4f}",
            f"budgets   {limits}",
            "",
            "[b]input[/b]",
            _json(p.get("input")),
        ]
        if p.get("output") is not None:
            lines += ["[b]output[/b]", _json(p.get("output"))]
        if p.get("error") is not None:
            lines += ["[b red]error[/b red]", _json(p.get("error"))]
        return "\n".join(lines)

    def action_back(self) -> None:
        """Back to the table."""
        self.app.pop_screen()

    def action_signal(self, signal: str) -> None:
        """Suspend or resume this process."""
        self.send_signal(signal)

    def action_kill(self) -> None:
        """Kill this process, after a confirmation."""

        def answered(yes: bool | None) -> None:
            if yes:
                self.send_signal("kill")

        self.app.push_screen(ConfirmDialog(f"Kill pid {self.pid} and its children?"), answered)

    @work(group="signal")
    async def send_signal(self, signal: str) -> None:
        """Signal this process, then reload."""
        try:
            await self.console.client.signal(self.pid, signal)
        except KernosError as exc:
            self.report(exc)
            return
        self.console.refresh_now()
        self.load()


SHOWN_MESSAGES = 6
"""Newest messages of a conversation state the detail view shows."""


def checkpoint_text(state: dict[str, Any]) -> str:
    """The current checkpoint, for the detail view: step, next nodes, pending interrupts,
    and the values (a conversation as its newest messages, one line each)."""
    from rich.markup import escape

    if state.get("checkpoint_id") is None:
        return "[b]checkpoint[/b]\nnone yet (no step has finished)"
    upcoming = ", ".join(state.get("next") or []) or "-"
    lines = [
        "[b]checkpoint[/b]",
        f"step      {state.get('step')}   next {escape(upcoming)}",
    ]
    for interrupt in state.get("interrupts") or []:
        lines.append(f"[yellow]interrupt[/yellow] {escape(_one_line(interrupt))}")
    values = dict(state.get("values") or {})
    messages = values.pop("messages", None)
    if isinstance(messages, list):
        lines.append(f"[b]messages[/b] ({len(messages)}, newest last)")
        for message in messages[-SHOWN_MESSAGES:]:
            lines.append(escape(_message_line(message)))
    if values:
        lines += ["[b]values[/b]", _json(values)]
    return "\n".join(lines)


def _message_line(message: Any) -> str:
    if not isinstance(message, dict):
        return _one_line(message)
    data = message.get("data") or {}
    kind = str(message.get("type", "?"))
    text = data.get("content") or ""
    calls = data.get("tool_calls") or []
    if calls:
        text = (str(text) + " " if text else "") + ", ".join(
            f"→ {c.get('name')}({_one_line(c.get('args'))})" for c in calls
        )
    return f"{kind:>6}: {_one_line(text)}"


def _one_line(value: Any, width: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _json(value: Any) -> str:
    from rich.markup import escape

    return escape(json.dumps(value, indent=2, sort_keys=True, default=str))
