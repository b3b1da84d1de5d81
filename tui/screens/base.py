"""What every console screen has: the header line, the stale-data banner, the footer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from kernos.kernel.errors import KernosError
from kernos.tui.widgets import ConnectionBanner, ConsoleHeader

if TYPE_CHECKING:
    from kernos.tui.app import ConsoleApp


class ConsoleScreen(Screen[None]):
    """A top-level screen: subclasses set ``TITLE`` and implement ``body``."""

    TITLE = "Kernos"
    HELP = ""
    """Extra lines for the ``?`` help of this screen."""

    @property
    def console(self) -> ConsoleApp:
        """The app, typed."""
        from kernos.tui.app import ConsoleApp

        assert isinstance(self.app, ConsoleApp)
        return self.app

    def compose(self) -> ComposeResult:
        """Header, banner, the screen's own widgets, footer."""
        yield ConsoleHeader(self.heading)
        yield ConnectionBanner(classes="banner")
        yield from self.body()
        yield Footer()

    @property
    def heading(self) -> str:
        """What the header calls this screen."""
        return self.TITLE

    def reload(self, _value: object = None) -> None:
        """Reload the screen's own data (a watch callback; the default does nothing)."""

    def body(self) -> Iterable[Widget]:
        """The screen's own widgets."""
        return []

    def report(self, exc: Exception) -> None:
        """Show a failed call as a notification (one line, what happened and what to do)."""
        message = str(exc) if isinstance(exc, KernosError) else f"{type(exc).__name__}: {exc}"
        self.notify(message, severity="error", timeout=6)

    def watch_app(self, name: str, callback: Any) -> None:
        """Call ``callback(value)`` now and whenever the app's reactive ``name`` changes."""
        self.watch(self.app, name, callback, init=True)
