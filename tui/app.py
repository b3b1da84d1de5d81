"""The console app: wiring only. Screens live in ``kernos.tui.screens``, widgets in
``kernos.tui.widgets`` and ``kernos.tui.dialogs``, API calls in ``kernos.tui.client``.

The app polls the kernel (health, processes, pending approvals) every ``refresh_seconds`` in
an async worker and keeps the answers in reactive attributes that screens and widgets watch.
A failed poll marks the connection lost and keeps the last data on screen, labelled as such;
the next poll that succeeds reconnects, so a kernel that restarts is picked up by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen

from kernos.kernel.errors import KernelUnavailable, KernosError
from kernos.kernel.identity import DEFAULT_TENANT, LOCAL_ADMIN
from kernos.tui.client import ConsoleClient
from kernos.tui.formatting import Now, system_now
from kernos.tui.screens import SCREEN_CLASSES

SCREENS_BY_KEY: tuple[tuple[str, str, str], ...] = (
    ("1", "processes", "Processes"),
    ("2", "approvals", "Approvals"),
    ("3", "chat", "Chat"),
    ("4", "audit", "Audit"),
    ("5", "events", "Events"),
    ("6", "metrics", "Metrics"),
)
"""Key, mode name and title of each top-level screen."""

ALIASES = {
    "ps": "processes",
    "p": "processes",
    "proc": "processes",
    "a": "approvals",
    "approval": "approvals",
    "c": "chat",
    "dlq": "events",
    "e": "events",
    "m": "metrics",
}
"""Short names ``:`` command mode accepts for screens."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the console acts as, for the header."""

    principal: str
    tenant: str


class ConsoleApp(App[None]):
    """The Kernos operator console (k9s/htop habits: ``:`` commands, ``/`` filter, one key
    per action, live refresh)."""

    TITLE = "Kernos console"
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = dict(SCREEN_CLASSES)
    CSS_PATH = "console.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(key, f"switch_mode('{mode}')", title, show=False)
            for key, mode, title in SCREENS_BY_KEY
        ),
        Binding("colon", "command_line", ":cmd", key_display=":"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
    ]

    connected: reactive[bool | None] = reactive(None)
    """``None`` until the first answer, then whether the last poll reached the kernel."""
    connection_note: reactive[str] = reactive("connecting…")
    """What the header says about the connection (when it was lost, what failed)."""
    processes: reactive[list[dict[str, Any]]] = reactive(list, always_update=False)
    """The newest processes of the tenant, as the last poll saw them."""
    approvals: reactive[list[dict[str, Any]]] = reactive(list, always_update=False)
    """Pending approvals, oldest first, as the last poll saw them."""
    version: reactive[str] = reactive("")
    """The kernel's version (from ``/healthz``)."""
    identity: reactive[Identity] = reactive(lambda: Identity(principal="", tenant=""))
    """Who the console acts as (``/v1/whoami``, asked again after every reconnection)."""
    llm: reactive[bool | None] = reactive(None)
    """Whether the kernel has an LLM for the operator agent (``None`` until it said)."""

    def __init__(
        self,
        client: ConsoleClient,
        identity: Identity,
        *,
        refresh_seconds: float = 2.0,
        now: Now = system_now,
        start: str = "processes",
    ) -> None:
        super().__init__()
        self.client = client
        self.set_reactive(ConsoleApp.identity, identity)
        self.refresh_seconds = refresh_seconds
        self.now = now
        self._start = start

    # -- Lifecycle ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        """Show the first screen and start polling the kernel."""
        self.switch_mode(self._start)
        self.poll()
        self.set_interval(self.refresh_seconds, self.poll)

    async def on_unmount(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()

    @work(exclusive=True, group="poll")
    async def poll(self) -> None:
        """Read health, processes and pending approvals; mark the connection either way."""
        try:
            health = await self.client.health()
            if self.connected is not True or self.llm is None:
                await self._ask_who()
            processes = await self.client.processes()
            approvals = await self.client.approvals()
        except KernelUnavailable as exc:
            if self.connected is not False:
                self.connection_note = f"lost at {self.now():%H:%M:%S}: {exc}; retrying"
            self.connected = False
            return
        except KernosError as exc:  # denied, or a kernel answering with an error
            self.connected = True
            self.connection_note = f"connected, but: {exc}"
            return
        self.version = str(health.get("version", ""))
        self.processes = processes
        self.approvals = approvals
        self.connected = True
        self.connection_note = "connected"

    async def _ask_who(self) -> None:
        """Learn the principal, its tenant and whether the kernel has an LLM (a kernel that
        came back may have been restarted with another configuration)."""
        who = await self.client.whoami()
        roles = ", ".join(who.get("roles") or [])
        self.identity = Identity(
            principal=str(who["principal"]) + (f" ({roles})" if roles else ""),
            tenant=str(who["tenant"]),
        )
        self.llm = bool(who.get("llm")) and bool(who.get("operator_agent"))

    def refresh_now(self) -> None:
        """Poll at once (after an action changed something)."""
        self.poll()

    # -- Actions ------------------------------------------------------------------------------

    def action_help(self) -> None:
        """``?``: the key bindings of this screen and the app."""
        from kernos.tui.dialogs import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_command_line(self) -> None:
        """``:``: k9s-style command mode."""
        from kernos.tui.dialogs import CommandLine

        self.push_screen(CommandLine(), self.run_command_line)

    def run_command_line(self, text: str | None) -> None:
        """Run a ``:`` command: a screen name (or alias), ``help``, ``q``/``quit``, or a slash
        command for the chat."""
        text = (text or "").strip()
        if not text:
            return
        word = text.split()[0].lower()
        if word in ("q", "quit", "exit"):
            self.exit()
            return
        if word in ("help", "h"):
            self.action_help()
            return
        if text.startswith("/"):
            self.switch_mode("chat")
            chat = self.screen
            submit = getattr(chat, "submit", None)
            if submit is not None:
                submit(text)
            return
        mode = ALIASES.get(word, word)
        if mode in self.MODES:
            self.switch_mode(mode)
        else:
            names = ", ".join(m for _, m, _ in SCREENS_BY_KEY)
            self.notify(f"unknown command :{word} (try {names}, help, q)", severity="warning")

    def get_system_commands(self, screen: Screen[Any]) -> Any:
        """The command palette: every screen, plus Textual's own commands."""
        yield from super().get_system_commands(screen)
        for key, mode, title in SCREENS_BY_KEY:
            yield SystemCommand(
                f"Go to {title}",
                f"Show the {title} screen (key {key}, or :{mode})",
                lambda mode=mode: self.switch_mode(mode),  # type: ignore[misc]
            )
        yield SystemCommand("Refresh", "Poll the kernel now", self.refresh_now)


def identity_for(client: ConsoleClient, *, admin_token: str | None) -> Identity:
    """The local admin if the client presents the home's admin token, else an API key whose
    owner the header cannot name yet (there is no ``whoami`` route)."""
    if client.token and admin_token and client.token == admin_token:
        return Identity(principal=f"{DEFAULT_TENANT}/{LOCAL_ADMIN}", tenant=DEFAULT_TENANT)
    return Identity(principal="API key", tenant="(key's tenant)")


def create_app(
    *,
    url: str | None = None,
    token: str | None = None,
    settings: Any = None,
    refresh_seconds: float = 2.0,
    now: Now = system_now,
    start: str = "processes",
) -> ConsoleApp:
    """Build the console for the kernel at ``url`` (default: the one the settings describe),
    with ``token`` (default: the local admin token of ``KERNOS_HOME``)."""
    from kernos.kernel.settings import load_settings
    from kernos.kernel.tokens import read_admin_token

    settings = settings or load_settings()
    client = ConsoleClient.from_settings(settings, url=url, token=token)
    identity = identity_for(client, admin_token=read_admin_token(settings.home))
    return ConsoleApp(client, identity, refresh_seconds=refresh_seconds, now=now, start=start)


__all__ = ["ALIASES", "SCREENS_BY_KEY", "ConsoleApp", "Identity", "create_app", "identity_for"]
