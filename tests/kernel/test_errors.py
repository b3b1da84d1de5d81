"""Error codes are stable, unique, documented, and map to the CLI's exit statuses."""

from __future__ import annotations

import re
from pathlib import Path

from kernos.kernel.errors import (
    EXIT_BAD_INPUT,
    EXIT_DENIED,
    EXIT_UNAVAILABLE,
    ConfigError,
    LeaseHeld,
    NotFound,
    PolicyDenied,
    all_error_classes,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_codes_are_unique_and_snake_case() -> None:
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[a-z][a-z_]*", c) for c in codes)


def test_exit_statuses_follow_the_contract() -> None:
    assert all(cls.exit_status in (1, 2, 3, 4) for cls in all_error_classes())
    assert NotFound.exit_status == ConfigError.exit_status == EXIT_BAD_INPUT
    assert PolicyDenied.exit_status == EXIT_DENIED
    assert LeaseHeld.exit_status == EXIT_UNAVAILABLE


def test_every_code_is_documented_with_its_statuses() -> None:
    import kernos.kernel.kernel  # noqa: F401 - every module that defines errors is loaded

    text = DOC.read_text()
    documented = {line.split("`")[1] for line in text.splitlines() if line.startswith("| `")}
    for cls in all_error_classes():
        row = f"| `{cls.code}` | `{cls.__name__}` | {cls.exit_status} | {cls.http_status} |"
        assert row in text, f"docs/errors.md lacks the row: {row}"
    assert documented == {cls.code for cls in all_error_classes()}, "stale rows in errors.md"


def test_an_instance_may_refine_its_code() -> None:
    error = NotFound("no such agent 'x'", code="agent_not_found")
    assert error.code == "agent_not_found"
    assert NotFound.code == "not_found"
    assert str(error) == "no such agent 'x'"
