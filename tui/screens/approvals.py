"""Approvals: pending questions with their proposed action and context; approve or deny
with a comment. Escalated ones (past a deadline, now with a higher role) are highlighted."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable, Static

from kernos.kernel.errors import KernosError
from kernos.tui.dialogs import CommentDialog
from kernos.tui.formatting import age, short_id
from kernos.tui.screens.base import ConsoleScreen


class ApprovalTable(DataTable[Any]):
    """Pending approvals, oldest first; posts ``ApprovalHighlighted`` as the cursor moves."""

    class ApprovalHighlighted(Message):
        """The cursor is on an approval (``None``: the table is empty)."""

        def __init__(self, approval: dict[str, Any] | None) -> None:
            super().__init__()
            self.approval = approval

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.approvals: list[dict[str, Any]] = []

    def on_mount(self) -> None:
        """Add the columns."""
        self.add_columns("ID", "PID", "KIND", "QUESTION", "ROLE", "LVL", "AGE")

    def show(self, approvals: list[dict[str, Any]], *, now: Any) -> None:
        """Replace the rows, keeping the cursor on the same approval when it is still here."""
        keep = self.selected()
        self.approvals = list(approvals)
        self.clear()
        for approval in self.approvals:
            escalated = int(approval.get("level") or 0) > 0
            style = "bold red" if escalated else ""
            cells = (
                short_id(str(approval["id"])),
                str(approval["pid"]),
                str(approval.get("kind", "")),
                str(approval.get("question", "")),
                str(approval.get("required_role") or "-"),
                ("▲" if escalated else "") + str(approval.get("level") or 0),
                age(approval.get("created_at"), now),
            )
            self.add_row(*(Text(c, style=style) for c in cells), key=str(approval["id"]))
        if keep is not None and any(a["id"] == keep["id"] for a in self.approvals):
            self.move_cursor(row=self.get_row_index(str(keep["id"])), animate=False)
        self.post_message(self.ApprovalHighlighted(self.selected()))

    def selected(self) -> dict[str, Any] | None:
        """The approval under the cursor, if any."""
        if self.row_count == 0 or not self.approvals:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return next((a for a in self.approvals if a["id"] == key), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Say which approval is under the cursor."""
        event.stop()
        self.post_message(self.ApprovalHighlighted(self.selected()))


class ApprovalsScreen(ConsoleScreen):
    """Pending approvals (``2``)."""

    TITLE = "Approvals"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "decide(True)", "approve"),
        Binding("d", "decide(False)", "deny"),
    ]

    def body(self) -> Iterable[Widget]:
        """The table and the selected approval's context."""
        yield ApprovalTable(id="approval-table")
        with VerticalScroll(id="approval-context"):
            yield Static("no pending approvals", id="approval-text")

    def on_mount(self) -> None:
        """Follow the app's polls."""
        self.watch_app("approvals", self._show)
        self.query_one(ApprovalTable).focus()

    def _show(self, approvals: list[dict[str, Any]]) -> None:
        self.query_one(ApprovalTable).show(approvals, now=self.console.now())

    def on_approval_table_approval_highlighted(
        self, event: ApprovalTable.ApprovalHighlighted
    ) -> None:
        """Show the proposed action and its context."""
        self.query_one("#approval-text", Static).update(describe(event.approval))

    def action_decide(self, approved: bool) -> None:
        """``a``/``d``: ask for a comment, then send the decision."""
        approval = self.query_one(ApprovalTable).selected()
        if approval is None:
            self.notify("no approval selected", severity="warning")
            return
        verb = "Approve" if approved else "Deny"
        title = f"{verb} {short_id(approval['id'])} (pid {approval['pid']}): {approval['question']}"

        def answered(comment: str | None) -> None:
            if comment is not None:
                self.decide(str(approval["id"]), approved, comment)

        self.app.push_screen(CommentDialog(title), answered)

    @work(group="decide")
    async def decide(self, approval_id: str, approved: bool, comment: str) -> None:
        """Send the decision and poll again (the process resumes with it)."""
        try:
            decided = await self.console.client.decide(
                approval_id, approved=approved, comment=comment or None
            )
        except KernosError as exc:
            self.report(exc)
            return
        self.notify(f"approval {short_id(approval_id)} {decided['status']}")
        self.console.refresh_now()


def describe(approval: dict[str, Any] | None) -> str:
    """The context an operator decides on: question, proposed action, rule, escalation."""
    if approval is None:
        return "no pending approvals"
    proposed = json.dumps(approval.get("proposed"), indent=2, sort_keys=True, default=str)
    chain = " → ".join(approval.get("escalation") or []) or "-"
    level = int(approval.get("level") or 0)
    lines = [
        f"[b]{escape(str(approval['question']))}[/b]",
        f"id {approval['id']}   pid {approval['pid']}   kind {approval.get('kind', '')}",
        f"role {approval.get('required_role') or '-'}   rule {approval.get('rule') or '-'}",
        f"deadline {approval.get('deadline') or '-'}   escalation {escape(chain)}",
    ]
    if level:
        lines.append(f"[b red]escalated (level {level})[/b red]")
    lines += ["[b]proposed[/b]", escape(proposed)]
    return "\n".join(lines)
