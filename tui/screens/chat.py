"""Chat: operator requests in a chat. Slash commands (``/ps``, ``/spawn``, ``/kill``,
``/approve``, ``/deny``, ``/help``) work with or without an LLM, with ``tab`` completion;
free text goes to the operator agent, which is not built yet, so it gets a clear message on
what to configure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.markup import escape
from textual import work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Input, RichLog

from kernos.kernel.errors import KernosError
from kernos.tui.formatting import short_id
from kernos.tui.screens.base import ConsoleScreen
from kernos.tui.slash import NO_LLM_MESSAGE, completions, run_slash
from kernos.tui.widgets import CompletingInput, LineSuggester


class ChatScreen(ConsoleScreen):
    """Operator chat (``3``)."""

    TITLE = "Chat"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+l", "clear", "clear"),
    ]
    HELP = "  tab        complete a /command, an agent or an approval id"

    def __init__(self) -> None:
        super().__init__()
        self.agents: list[str] = []

    def body(self) -> Iterable[Widget]:
        """The transcript and the prompt."""
        yield RichLog(id="chat-log", wrap=True, markup=True)
        yield CompletingInput(
            placeholder="/help for commands; free text for the operator agent",
            suggester=LineSuggester(self._complete),
            id="chat-input",
        )

    def on_mount(self) -> None:
        """Greet, learn the agents' names (for completion) and focus the prompt."""
        self.query_one(RichLog).write(
            "[dim]Slash commands: /ps /spawn AGENT /kill PID /approve ID /deny ID /help[/dim]"
        )
        self.query_one(CompletingInput).focus()
        self.load_agents()

    @work(group="agents")
    async def load_agents(self) -> None:
        """Agent names for ``/spawn`` completion (none while disconnected)."""
        try:
            self.agents = sorted(a["name"] for a in await self.console.client.agents())
        except KernosError:
            self.agents = []

    def _complete(self, text: str) -> list[str]:
        approvals = [short_id(str(a["id"])) for a in self.console.approvals]
        return completions(text, agents=self.agents, approvals=approvals)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Send what was typed."""
        event.stop()
        text = event.value.strip()
        event.input.value = ""
        if text:
            self.submit(text)

    def submit(self, text: str) -> None:
        """Handle one line: a slash command, or free text."""
        log = self.query_one(RichLog)
        log.write(f"[b]you>[/b] {escape(text)}")
        if text.startswith("/"):
            self.run_command(text)
        else:
            log.write(f"[yellow]kernos>[/yellow] {escape(NO_LLM_MESSAGE)}")

    @work(group="slash")
    async def run_command(self, text: str) -> None:
        """Run a slash command and show its reply."""
        log = self.query_one(RichLog)
        try:
            lines = await run_slash(self.console.client, text, now=self.console.now())
        except KernosError as exc:
            log.write(f"[red]error>[/red] {escape(str(exc))}")
            return
        for line in lines:
            log.write(escape(line))
        if not text.startswith(("/help", "/ps")):
            self.console.refresh_now()
        if self.agents == []:
            self.load_agents()

    def action_clear(self) -> None:
        """Clear the transcript."""
        self.query_one(RichLog).clear()


__all__ = ["ChatScreen"]
