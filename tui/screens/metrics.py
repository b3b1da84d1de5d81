"""Metrics: sparklines of syscall latency (p50/p95/p99), throughput, queue depth and token
use per model, from ``GET /metrics`` scraped on every refresh."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import ClassVar

from textual import work
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Label, Sparkline, Static

from kernos.kernel.errors import KernosError
from kernos.tui.metrics import MetricsHistory, latest, parse
from kernos.tui.screens.base import ConsoleScreen

SERIES = (
    ("p50", "syscall latency p50", "ms"),
    ("p95", "syscall latency p95", "ms"),
    ("p99", "syscall latency p99", "ms"),
    ("throughput", "syscalls per second", "/s"),
    ("queue_depth", "LLM queue depth", ""),
)


class MetricsScreen(ConsoleScreen):
    """Metrics (``6``)."""

    TITLE = "Metrics"
    BINDINGS: ClassVar[list[BindingType]] = []

    def __init__(self) -> None:
        super().__init__()
        self.history = MetricsHistory()

    def body(self) -> Iterable[Widget]:
        """One labelled sparkline per series; token rows appear as models are seen."""
        with VerticalScroll(id="metrics"):
            yield Static("waiting for the first scrape…", id="metrics-note", classes="summary")
            for key, _title, _unit in SERIES:
                yield Label("", id=f"label-{key}", classes="spark-label")
                yield Sparkline([], id=f"spark-{key}", summary_function=max)
            yield Static("", id="metrics-tokens")

    def on_mount(self) -> None:
        """Scrape now and on every refresh."""
        self.scrape()
        self.set_interval(self.console.refresh_seconds, self.scrape)

    @work(exclusive=True, group="scrape")
    async def scrape(self) -> None:
        """Read ``/metrics`` and extend the sparklines."""
        try:
            text = await self.console.client.metrics()
        except KernosError as exc:
            self.query_one("#metrics-note", Static).update(f"no metrics: {exc}")
            return
        self.history.add(parse(text), at=time.monotonic())
        self.redraw()

    def redraw(self) -> None:
        """Draw every series from the history."""
        history = self.history
        points = len(history.p50)
        self.query_one("#metrics-note", Static).update(
            f"last {points} intervals of {self.console.refresh_seconds:g} s"
            if points
            else "waiting for a second scrape to compute rates…"
        )
        for key, title, unit in SERIES:
            values = list(getattr(history, key))
            if unit == "ms":
                values = [v * 1000 for v in values]
            self.query_one(f"#label-{key}", Label).update(
                f"{title}: {latest(values):.1f}{unit} (max {max(values, default=0):.1f})"
            )
            # One point draws as a full bar whatever its value; wait for a second.
            self.query_one(f"#spark-{key}", Sparkline).data = values if len(values) > 1 else []
        rows = [
            f"{model}: {latest(used):.0f} tokens last interval, {sum(used):.0f} shown"
            for model, used in sorted(history.tokens.items())
        ]
        self.query_one("#metrics-tokens", Static).update(
            "tokens per model\n" + ("\n".join(rows) if rows else "  none used yet")
        )
