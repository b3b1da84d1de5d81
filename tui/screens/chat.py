"""Chat: operator requests in a chat. Slash commands (``/ps``, ``/spawn``, ``/kill``,
``/approve``, ``/deny``, ``/help``) work with or without an LLM, with ``tab`` completion.

Free text goes to the ``operator`` agent when the kernel has an LLM: each request is a new
process owned by the operator, given the conversation so far. What it proposes runs as governed
tool calls; one that needs approval (``kill_process`` always does) is shown here with its
approval id while the process waits, and the answer follows once it is decided. Without an LLM,
free text gets a clear message on what to configure."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, ClassVar

from rich.markup import escape
from textual import work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Input, RichLog

from kernos.kernel.errors import KernelUnavailable, KernosError
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
        self.history: list[dict[str, str]] = []
        """The conversation with the operator agent, sent with every request."""
        self.working: int | None = None
        """The pid of the operator request in progress (one at a time), if any."""

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
        elif self.console.llm is False:
            log.write(f"[yellow]kernos>[/yellow] {escape(NO_LLM_MESSAGE)}")
        elif self.console.llm is None:
            log.write(
                "[yellow]kernos>[/yellow] not connected to the kernel yet, so the operator "
                "agent cannot answer; try again once the header says connected."
            )
        elif self.working is not None:
            log.write(
                f"[yellow]kernos>[/yellow] still working on your last request (pid "
                f"{self.working}); wait for its answer, or /kill {self.working}"
            )
        else:
            self.history.append({"role": "user", "content": text})
            self.working = -1  # claimed until the process exists
            self.ask_operator(list(self.history[-MAX_TURNS:]))

    @work(group="operator")
    async def ask_operator(self, messages: list[dict[str, str]]) -> None:
        """Start the operator agent on the conversation, show what it proposes while it waits
        for approvals, then its answer."""
        try:
            await self._ask_operator(messages)
        finally:
            self.working = None

    async def _ask_operator(self, messages: list[dict[str, str]]) -> None:
        log = self.query_one(RichLog)
        client = self.console.client
        try:
            process = await client.run(OPERATOR_AGENT, {"messages": messages})
        except KernosError as exc:
            log.write(f"[red]error>[/red] {escape(str(exc))}")
            return
        pid = self.working = int(process["pid"])
        log.write(f"[dim]operator agent working (pid {pid})…[/dim]")
        shown: set[str] = set()
        delay = 0.2
        while True:
            try:
                process = await client.process(pid)
                if process["state"] == "waiting" and process.get("waiting_on") == "human":
                    for approval in await client.approvals():
                        if approval["pid"] == pid and approval["id"] not in shown:
                            shown.add(approval["id"])
                            log.write(_proposal(approval))
            except KernelUnavailable:
                log.write(
                    f"[red]error>[/red] lost the kernel while pid {pid} was working; its "
                    "answer will be in that process's output (Processes screen) once it is back"
                )
                return
            except KernosError as exc:
                log.write(f"[red]error>[/red] {escape(str(exc))}")
                return
            if process["state"] in FINISHED:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        self.console.refresh_now()
        if process["state"] == "suspended":
            log.write(
                f"[yellow]kernos>[/yellow] the operator agent (pid {pid}) was suspended; "
                "resume it (Processes screen, r) and its answer will be in its output"
            )
            return
        if process["state"] != "done":
            error = (process.get("error") or {}).get("message") or process["state"]
            log.write(f"[red]error>[/red] the operator agent (pid {pid}) {escape(str(error))}")
            return
        answer = _answer(process.get("output"))
        self.history.append({"role": "assistant", "content": answer})
        log.write(f"[yellow]kernos>[/yellow] {escape(answer)}")

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
        """Clear the transcript and start a new conversation."""
        self.query_one(RichLog).clear()
        self.history.clear()


OPERATOR_AGENT = "operator"
"""The agent free text goes to."""

MAX_TURNS = 40
"""Most turns of the conversation sent with a request (the oldest are left out)."""

FINISHED = frozenset({"done", "failed", "killed", "suspended"})
"""Process states after which no answer comes on its own (a suspended one needs a resume)."""


def _proposal(approval: dict[str, Any]) -> str:
    short = short_id(str(approval["id"]))
    role = approval.get("required_role") or "operator"
    return (
        f"[yellow]kernos>[/yellow] proposes: {escape(str(approval.get('question', '')))} "
        f"[b]waiting for approval {short}[/b] ({escape(role)}): approve it on the Approvals "
        f"screen (2) or with /approve {short}, or /deny {short}"
    )


def _answer(output: Any) -> str:
    """The text of the last AI message in the operator process's output."""
    messages = (output or {}).get("messages") or []
    for message in reversed(messages):
        if message.get("type") != "ai":
            continue
        content = (message.get("data") or {}).get("content")
        if isinstance(content, list):  # content blocks
            content = " ".join(
                str(block.get("text", "")) for block in content if isinstance(block, dict)
            )
        if content:
            return str(content)
    return "(the operator agent finished without an answer)"


__all__ = ["ChatScreen"]
