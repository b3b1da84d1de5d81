"""Audit: a live tail of the tenant's audit records with a filter, and ``v`` to verify the
hash chain (its result shown in a line above the table)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.markup import escape
from textual import work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Static

from kernos.kernel.errors import KernosError
from kernos.tui.formatting import clock_time
from kernos.tui.screens.base import ConsoleScreen
from kernos.tui.widgets import FilterBar

KEEP = 1000
"""Most records the tail keeps on screen."""


def record_cells(record: dict[str, Any]) -> tuple[str, ...]:
    """One audit record as the table shows it."""
    return (
        str(record["seq"]),
        clock_time(record.get("ts")),
        str(record.get("principal") or ""),
        str(record.get("pid") or "-"),
        str(record.get("event") or ""),
        str(record.get("target") or record.get("kind") or ""),
        str(record.get("decision") or ""),
    )


def record_matches(record: dict[str, Any], text: str) -> bool:
    """Whether every word of ``text`` appears in the record's shown fields."""
    haystack = " ".join(record_cells(record)).lower()
    return all(word in haystack for word in text.lower().split())


class AuditScreen(ConsoleScreen):
    """Audit tail (``4``)."""

    TITLE = "Audit"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "filter", key_display="/"),
        Binding("v", "verify", "verify"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []
        self.filter_text = ""

    def body(self) -> Iterable[Widget]:
        """The verify line, the tail and the filter bar."""
        yield Static("v verifies the hash chain", id="audit-verify", classes="summary")
        yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        yield FilterBar(id="audit-filter")

    def on_mount(self) -> None:
        """Load the newest records and tail on every poll of the app."""
        table = self.query_one("#audit-table", DataTable)
        table.add_columns("SEQ", "TIME", "PRINCIPAL", "PID", "EVENT", "TARGET", "DECISION")
        self.query_one(FilterBar).display = False
        self.watch(self.app, "connected", self.reload, init=False)
        self.set_interval(self.console.refresh_seconds, self.tail)
        self.tail()
        table.focus()

    def reload(self, _value: object = None) -> None:
        """Fetch new records (on reconnection too)."""
        self.tail()

    @work(exclusive=True, group="tail")
    async def tail(self) -> None:
        """Fetch the records after the last one shown (the newest 200 at first)."""
        after = self.records[-1]["seq"] if self.records else None
        try:
            fresh = await self.console.client.audit(after=after, limit=200)
        except KernosError:
            return  # the header and banner say the kernel is unreachable
        if not fresh:
            return
        self.records = (self.records + fresh)[-KEEP:]
        self._show_records(fresh if len(self.records) < KEEP else None)

    def _show_records(self, added: list[dict[str, Any]] | None) -> None:
        table = self.query_one("#audit-table", DataTable)
        if added is None or self.filter_text:
            table.clear()
            added = self.records
        at_end = table.cursor_row >= table.row_count - 1
        for record in added:
            if record_matches(record, self.filter_text):
                table.add_row(*record_cells(record), key=str(record["seq"]))
        if at_end and table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)

    def on_filter_bar_filter_changed(self, event: FilterBar.FilterChanged) -> None:
        """Refilter the records kept."""
        self.filter_text = event.text
        table = self.query_one("#audit-table", DataTable)
        table.clear()
        for record in self.records:
            if record_matches(record, self.filter_text):
                table.add_row(*record_cells(record), key=str(record["seq"]))

    def action_filter(self) -> None:
        """``/``: filter the tail."""
        self.query_one(FilterBar).open()

    def action_verify(self) -> None:
        """``v``: verify the whole chain."""
        self.query_one("#audit-verify", Static).update("verifying…")
        self.verify()

    @work(exclusive=True, group="verify")
    async def verify(self) -> None:
        """Ask the kernel to recompute every hash, and show what it found."""
        line = self.query_one("#audit-verify", Static)
        try:
            result = await self.console.client.verify()
        except KernosError as exc:
            line.update(f"[red]verify failed: {escape(str(exc))}[/red]")
            return
        line.update(verify_text(result))


def verify_text(result: dict[str, Any]) -> str:
    """One line saying what ``GET /v1/audit/verify`` found."""
    if result.get("ok"):
        signed = result.get("checkpoints") or 0
        return (
            f"[green]✔ chain intact[/green]: {result.get('records', 0)} records verified up to "
            f"seq {result.get('head_seq')}, {signed} signed checkpoints"
        )
    return (
        f"[b red]✘ chain broken at seq {result.get('first_bad_seq')}[/b red] "
        f"({escape(str(result.get('kind')))}): {escape(str(result.get('detail') or ''))}"
    )
