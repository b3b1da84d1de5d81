"""Printing for CLI commands: JSON for machines, aligned tables for people, logging setup."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """Print rows as a left-aligned table with a header line."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def configure_logging(level: str, *, log_dir: Path | None, to_stderr: bool = True) -> Path | None:
    """Log to stderr (unless ``to_stderr`` is false: a full-screen console owns the terminal)
    and, when ``log_dir`` is writable, to ``log_dir/kernos.log`` (rotated)."""
    root = logging.getLogger()
    root.setLevel(level)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    root.handlers[:] = [stderr] if to_stderr else []
    # Alembic narrates every migration step at INFO; ours says what changed in one line.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    if log_dir is None:
        return None
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "kernos.log"
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=10_000_000, backupCount=3)
    except OSError:
        return None
    handler.setFormatter(formatter)
    root.addHandler(handler)
    return path
