"""Events: the tenant's live event stream, and the dead-letter queue (deliveries that failed
every attempt) with replay."""

from __future__ import annotations

import json
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

KEPT_EVENTS = 500
"""Most events the live table keeps (the oldest leave first)."""


class EventsScreen(ConsoleScreen):
    """The live event stream and the dead letters (``5``)."""

    TITLE = "Events"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "replay", "replay"),
    ]
    HELP = "  tab        switch between the event stream and the dead letters"

    def __init__(self) -> None:
        super().__init__()
        self.letters: list[dict[str, Any]] | None = None
        self.events: dict[str, dict[str, Any]] = {}
        """Events in the live table, by ``seq`` (as text: the row key)."""
        self.last_seq: int | None = None
        self._shown: str = "events"

    def body(self) -> Iterable[Widget]:
        """The live events, the dead letters, and the selected one in full."""
        yield Static("events (live)", id="events-summary", classes="summary")
        yield DataTable(id="events-table", cursor_type="row")
        yield Static("dead-letter queue", id="dlq-summary", classes="summary")
        yield DataTable(id="dlq-table", cursor_type="row")
        yield Static("", id="dlq-detail")

    def on_mount(self) -> None:
        """Load now and on every poll."""
        events = self.query_one("#events-table", DataTable)
        events.add_columns("SEQ", "TIME", "TOPIC", "SOURCE", "DATA")
        table = self.query_one("#dlq-table", DataTable)
        table.add_columns("ID", "TIME", "TOPIC", "SUBSCRIBER", "TRIES", "ERROR")
        self.watch(self.app, "processes", self.reload, init=False)
        self.watch(self.app, "connected", self.reload, init=False)
        self.load()
        self.load_events()
        # Its own timer: the app's poll changes nothing when only events arrive.
        self.set_interval(self.console.refresh_seconds, self.load_events)
        events.focus()

    def reload(self, _value: object = None) -> None:
        """Reload on every poll of the app that changed something."""
        self.load()

    @work(exclusive=True, group="events")
    async def load_events(self) -> None:
        """Append the events published since the last look (the newest 100 the first time)."""
        try:
            page = await self.console.client.events(
                after=self.last_seq, limit=100 if self.last_seq is None else 500
            )
        except KernosError:
            return
        table = self.query_one("#events-table", DataTable)
        following = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        for event in page["data"]:
            key = str(event["seq"])
            if key in self.events:
                continue
            self.events[key] = event
            table.add_row(
                key,
                clock_time(event.get("time")),
                str(event.get("topic", "")),
                str(event.get("source", "")),
                _one_line(event.get("data"), 60),
                key=key,
            )
        while len(self.events) > KEPT_EVENTS:
            oldest = next(iter(self.events))
            del self.events[oldest]
            table.remove_row(oldest)
        if page.get("last_seq") is not None:
            self.last_seq = int(page["last_seq"])
        elif self.last_seq is None:
            self.last_seq = 0
        count = len(self.events)
        self.query_one("#events-summary", Static).update(
            f"events (live): the newest {count}" if count else "events (live): none yet"
        )
        if following and table.row_count:
            table.move_cursor(row=table.row_count - 1)

    @work(exclusive=True, group="dlq")
    async def load(self) -> None:
        """Read the dead letters not yet replayed."""
        try:
            letters = await self.console.client.dead_letters()
        except KernosError:
            return
        if letters == self.letters:
            return  # unchanged: keep the cursor where the operator left it
        self.letters = letters
        table = self.query_one("#dlq-table", DataTable)
        table.clear()
        for letter in letters:
            event = letter.get("event") or {}
            table.add_row(
                str(letter["id"]),
                clock_time(letter.get("created_at")),
                str(event.get("topic", "")),
                str(letter.get("subscriber", "")),
                str(letter.get("attempts", "")),
                str(letter.get("error") or "")[:60],
                key=str(letter["id"]),
            )
        count = len(letters)
        self.query_one("#dlq-summary", Static).update(
            f"{count} dead letters; r replays the selected one" if count else "no dead letters"
        )
        if self._shown == "dlq":
            self._detail()

    def _selected(self) -> dict[str, Any] | None:
        table = self.query_one("#dlq-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((d for d in self.letters or [] if str(d["id"]) == key), None)

    def _selected_event(self) -> dict[str, Any] | None:
        table = self.query_one("#events-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.events.get(str(key))

    def _detail(self) -> None:
        chosen = self._selected() if self._shown == "dlq" else self._selected_event()
        text = "" if chosen is None else escape(json.dumps(chosen, indent=2, default=str))
        self.query_one("#dlq-detail", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Show the highlighted event or dead letter in full."""
        self._shown = "dlq" if event.data_table.id == "dlq-table" else "events"
        self._detail()

    def action_replay(self) -> None:
        """``r``: deliver the selected dead letter again."""
        letter = self._selected()
        if letter is not None:
            self.replay(int(letter["id"]))

    @work(group="replay")
    async def replay(self, dead_letter_id: int) -> None:
        """Replay it and reload."""
        try:
            await self.console.client.replay(dead_letter_id)
        except KernosError as exc:
            self.report(exc)
            return
        self.notify(f"dead letter {dead_letter_id} replayed")
        self.load()


def _one_line(value: Any, width: int) -> str:
    text = " ".join(json.dumps(value, default=str).split())
    return text if len(text) <= width else text[: width - 1] + "…"
