"""The console's top-level screens, one per mode (``1``-``6`` or ``:name``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.screen import Screen

from kernos.tui.screens.approvals import ApprovalsScreen
from kernos.tui.screens.audit import AuditScreen
from kernos.tui.screens.chat import ChatScreen
from kernos.tui.screens.events import EventsScreen
from kernos.tui.screens.metrics import MetricsScreen
from kernos.tui.screens.processes import ProcessDetailScreen, ProcessesScreen

SCREEN_CLASSES: dict[str, Callable[[], Screen[Any]]] = {
    "processes": ProcessesScreen,
    "approvals": ApprovalsScreen,
    "chat": ChatScreen,
    "audit": AuditScreen,
    "events": EventsScreen,
    "metrics": MetricsScreen,
}
"""Mode name → screen class (the app's ``MODES``)."""

__all__ = [
    "SCREEN_CLASSES",
    "ApprovalsScreen",
    "AuditScreen",
    "ChatScreen",
    "EventsScreen",
    "MetricsScreen",
    "ProcessDetailScreen",
    "ProcessesScreen",
]
