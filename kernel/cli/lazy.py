"""Commands that are imported only when they run, so ``kernos --help`` stays fast."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """A CLI command named by ``"package.module:attribute"``, loaded on first use.

    ``help`` is the one-line summary ``kernos --help`` shows without importing the module.
    """

    name: str
    target: str
    help: str

    def load(self) -> click.Command:
        """Import and return the click command (or group)."""
        module_name, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command
