"""The console's own widgets. Each owns its messages (``ProcessTable.ProcessSelected``) and
reads the app's polled state through watches; none does I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import DataTable, Input, Static

from kernos.tui.formatting import (
    PROCESS_COLUMNS,
    Now,
    matches,
    process_cells,
    process_sort_key,
    system_now,
)

if TYPE_CHECKING:
    from kernos.tui.app import ConsoleApp


class ConsoleHeader(Static):
    """One line on every screen: screen title, kernel URL, tenant, principal, connection
    state and the pending-approval badge (red when any is escalated)."""

    def __init__(self, title: str) -> None:
        super().__init__(id="console-header")
        self.title_text = title

    @property
    def console(self) -> ConsoleApp:
        """The app, typed."""
        from kernos.tui.app import ConsoleApp

        assert isinstance(self.app, ConsoleApp)
        return self.app

    def on_mount(self) -> None:
        """Redraw whenever the connection or the approvals change."""
        for name in ("connected", "connection_note", "approvals", "processes", "identity"):
            self.watch(self.app, name, lambda _value: self.redraw(), init=False)
        self.redraw()

    def redraw(self) -> None:
        """Render the line from the app's state."""
        app = self.console
        tenant = app.identity.tenant
        if tenant.startswith("(") and (app.processes or app.approvals):
            tenant = str((app.processes or app.approvals)[0].get("tenant", tenant))
        line = Text()
        line.append(f" {self.title_text} ", style="bold reverse")
        line.append("  ")
        if app.connected is None:
            line.append("◌ connecting", style="yellow")
        elif app.connected:
            line.append("● connected", style="green")
        else:
            line.append("○ disconnected", style="bold red")
        pending = len(app.approvals)
        escalated = sum(1 for a in app.approvals if int(a.get("level") or 0) > 0)
        if pending:
            style = "bold white on red" if escalated else "bold black on yellow"
            badge = f" {pending} pending" + (f", {escalated} escalated " if escalated else " ")
            line.append("  ")
            line.append(badge, style=style)
        # Most important first: at 80 columns the URL and identity are what gets cut.
        line.append(f"  {app.client.base_url}", style="bold")
        who = app.identity.principal
        line.append(f"  {who}" if who.startswith(f"{tenant}/") else f"  {who} in {tenant}")
        self.update(line)
        self.set_class(app.connected is False, "-disconnected")


class ConnectionBanner(Static):
    """A line saying the data shown is stale while the kernel cannot be reached (hidden
    otherwise), so nothing on screen pretends to be live."""

    def on_mount(self) -> None:
        """Follow the app's connection state."""
        self.watch(self.app, "connection_note", lambda _v: self.redraw(), init=False)
        self.watch(self.app, "connected", lambda _v: self.redraw(), init=False)
        self.redraw()

    def redraw(self) -> None:
        """Show or hide the banner."""
        connected = getattr(self.app, "connected", None)
        note = getattr(self.app, "connection_note", "")
        self.display = connected is False
        self.update(f"Kernel unreachable ({note}). Showing the last data received.")


class ProcessTable(DataTable[str]):
    """The process table: sortable (``<``/``>`` pick the column, ``i`` inverts, or click a
    heading) and filterable; ``enter`` posts ``ProcessSelected``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("less_than_sign", "sort_by(-1)", "sort ←", key_display="<", show=False),
        Binding("greater_than_sign", "sort_by(1)", "sort →", key_display=">", show=False),
        Binding("i", "invert_sort", "invert sort", show=False),
    ]

    class ProcessSelected(Message):
        """The operator opened a process (``enter`` on its row)."""

        def __init__(self, pid: int) -> None:
            super().__init__()
            self.pid = pid

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_data: list[dict[str, Any]] = []
        self.filter_text = ""
        self.sort_column = "pid"
        self.sort_reverse = True  # newest first, like `ps` by start time reversed
        self.now: Now = system_now

    def on_mount(self) -> None:
        """Add the columns."""
        for key, heading in PROCESS_COLUMNS:
            self.add_column(heading, key=key)

    def show(self, processes: list[dict[str, Any]]) -> None:
        """Replace the rows (keeps the cursor on the same pid when it is still shown)."""
        self.rows_data = list(processes)
        self._render_rows()

    def set_filter(self, text: str) -> None:
        """Show only processes matching every word of ``text``."""
        self.filter_text = text
        self._render_rows()

    @property
    def shown(self) -> list[dict[str, Any]]:
        """The processes on screen, in display order."""
        rows = [p for p in self.rows_data if matches(p, self.filter_text)]
        return sorted(rows, key=process_sort_key(self.sort_column), reverse=self.sort_reverse)

    def selected_pid(self) -> int | None:
        """The pid under the cursor, if any."""
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return int(str(key.value)) if key.value is not None else None

    def _render_rows(self) -> None:
        keep = self.selected_pid()
        now = self.now()
        self.clear()
        for process in self.shown:
            self.add_row(*process_cells(process, now), key=str(process["pid"]))
        headings = dict(PROCESS_COLUMNS)
        for column in self.columns.values():
            key = str(column.key.value)
            mark = (" ▼" if self.sort_reverse else " ▲") if key == self.sort_column else ""
            column.label = Text(headings[key] + mark)
        self.refresh()
        if keep is not None:
            try:
                self.move_cursor(row=self.get_row_index(str(keep)), animate=False)
            except Exception:  # the row is gone (filtered out or finished and dropped)
                self.move_cursor(row=0, animate=False)

    def action_sort_by(self, step: int) -> None:
        """Move the sort to the next or previous column."""
        keys = [k for k, _ in PROCESS_COLUMNS]
        self.sort_column = keys[(keys.index(self.sort_column) + step) % len(keys)]
        self._render_rows()

    def action_invert_sort(self) -> None:
        """Reverse the sort order."""
        self.sort_reverse = not self.sort_reverse
        self._render_rows()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """Clicking a heading sorts by it (again: inverts)."""
        key = str(event.column_key.value)
        if key == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = key, False
        self._render_rows()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """``enter`` on a row opens that process."""
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.ProcessSelected(int(str(event.row_key.value))))


class FilterBar(Input):
    """The ``/`` filter line: hidden until ``/``; posts ``FilterChanged`` as the operator
    types, ``escape`` clears and hides it, ``enter`` keeps the filter and hides it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "clear", "clear", show=False)]

    class FilterChanged(Message):
        """The filter text changed (empty: no filter)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(placeholder="/ filter (enter keeps it, escape clears)", **kwargs)

    def open(self) -> None:
        """Show the line and focus it."""
        self.display = True
        self.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Every keystroke refilters."""
        event.stop()
        self.post_message(self.FilterChanged(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """``enter`` keeps the filter and gives the focus back."""
        event.stop()
        self.display = bool(self.value)
        self.screen.focus_next()

    def action_clear(self) -> None:
        """``escape`` clears the filter and hides the line."""
        self.value = ""
        self.post_message(self.FilterChanged(""))
        self.display = False
        self.screen.focus_next()


class LineSuggester(Suggester):
    """Suggests whole-line completions from a function of the current text."""

    def __init__(self, complete: Callable[[str], list[str]]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self._complete = complete

    async def get_suggestion(self, value: str) -> str | None:
        """The first completion longer than what was typed."""
        for candidate in self._complete(value):
            if len(candidate) > len(value):
                return candidate
        return None


class CompletingInput(Input):
    """An input whose ``tab`` accepts the suggested completion (``right`` does too)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "complete", "complete", show=False, priority=True),
    ]

    def action_complete(self) -> None:
        """Accept the suggestion, if there is one."""
        if self._suggestion and self._suggestion != self.value:
            self.value = self._suggestion
            self.cursor_position = len(self.value)
