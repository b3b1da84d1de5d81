"""Events: the dead-letter queue (deliveries that failed every attempt) with replay."""

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


class EventsScreen(ConsoleScreen):
    """Dead letters (``5``)."""

    TITLE = "Events"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "replay", "replay"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.letters: list[dict[str, Any]] | None = None

    def body(self) -> Iterable[Widget]:
        """The dead-letter table and the selected one's event."""
        yield Static("dead-letter queue", id="dlq-summary", classes="summary")
        yield DataTable(id="dlq-table", cursor_type="row")
        yield Static("", id="dlq-detail")

    def on_mount(self) -> None:
        """Load now and on every poll."""
        table = self.query_one("#dlq-table", DataTable)
        table.add_columns("ID", "TIME", "TOPIC", "SUBSCRIBER", "TRIES", "ERROR")
        self.watch(self.app, "processes", self.reload, init=False)
        self.watch(self.app, "connected", self.reload, init=False)
        self.load()
        table.focus()

    def reload(self, _value: object = None) -> None:
        """Reload on every poll of the app."""
        self.load()

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
        self._detail()

    def _selected(self) -> dict[str, Any] | None:
        table = self.query_one("#dlq-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((d for d in self.letters or [] if str(d["id"]) == key), None)

    def _detail(self) -> None:
        letter = self._selected()
        text = "" if letter is None else escape(json.dumps(letter, indent=2, default=str))
        self.query_one("#dlq-detail", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Show the selected dead letter in full."""
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
