"""Modal screens: confirm, comment, ``:`` command line and ``?`` help. Each dismisses with
its answer; the screen that opened it acts on the answer."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Static

from kernos.tui.widgets import CompletingInput, LineSuggester


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no (``y``/``n``, ``enter`` takes the focused button, ``escape`` is no)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__(classes="dialog-screen")
        self.question = question

    def compose(self) -> ComposeResult:
        """The question and two buttons."""
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        """Focus "No": a stray ``enter`` must not kill anything."""
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Answer with the button."""
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        """Answer from a key."""
        self.dismiss(answer)


class CommentDialog(ModalScreen[str | None]):
    """An optional comment for a decision: ``enter`` submits (empty is fine), ``escape``
    cancels (``None``)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title

    def compose(self) -> ComposeResult:
        """The title and the comment line."""
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(placeholder="comment (optional), enter to send", id="comment")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Send the decision with this comment."""
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        """Decide nothing."""
        self.dismiss(None)


COMMAND_WORDS = (
    "processes",
    "approvals",
    "chat",
    "audit",
    "events",
    "metrics",
    "help",
    "quit",
    "/ps",
    "/spawn",
    "/kill",
    "/approve",
    "/deny",
    "/help",
)
"""What ``:`` completes."""


class CommandLine(ModalScreen[str | None]):
    """k9s' ``:`` prompt at the bottom: a screen name, ``help``, ``q``, or a slash command."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self) -> None:
        super().__init__(classes="command-screen")

    def compose(self) -> ComposeResult:
        """The prompt, with completion."""

        def complete(text: str) -> list[str]:
            return [w for w in COMMAND_WORDS if text and w.startswith(text)]

        yield CompletingInput(
            placeholder=":processes, :approvals, :chat, :audit, :events, :metrics, :q",
            suggester=LineSuggester(complete),
            id="command-input",
        )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Run it."""
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        """Close without running anything."""
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """``?``: the keys of the screen below and of the app (any key closes)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "close"),
    ]

    def __init__(self, below: Screen[Any]) -> None:
        super().__init__(classes="dialog-screen")
        self.below = below

    def compose(self) -> ComposeResult:
        """One line per binding."""
        lines = [
            "[b]Everywhere[/b]",
            "  1-6        Processes, Approvals, Chat, Audit, Events, Metrics",
            "  :          command mode (:processes, :approvals, :chat, :audit, :events, :q)",
            "  ctrl+p     command palette",
            "  ?          this help     q  quit",
        ]
        own = [
            b
            for b in getattr(self.below, "BINDINGS", [])
            if isinstance(b, Binding) and b.description
        ]
        if own:
            lines.append(f"[b]{getattr(self.below, 'TITLE', 'This screen')}[/b]")
            for binding in own:
                key = binding.key_display or binding.key
                lines.append(f"  {key:<10} {binding.description}")
        extra = getattr(self.below, "HELP", "")
        if extra:
            lines.append(extra)
        with Vertical(classes="dialog help"):
            yield Label("Keys", classes="dialog-title")
            yield Static("\n".join(lines))

    def action_close(self) -> None:
        """Back to the screen."""
        self.dismiss(None)
