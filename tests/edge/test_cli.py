"""Tests for the ``kernos-edge`` command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kernos.edge import __version__
from kernos.edge.buffer import ForwardBuffer
from kernos.edge.cli import main


def invoke(*args: str) -> Result:
    # catch_exceptions=False: a traceback must fail the test, not hide in result.exception.
    return CliRunner().invoke(main, list(args), prog_name="kernos-edge", catch_exceptions=False)


def assert_one_line_error(result: Result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kernos-edge: error: ")
    assert result.stdout == ""
    return lines[0]


@pytest.fixture
def buffer_file(tmp_path: Path) -> Path:
    path = tmp_path / "edge-buffer.db"
    with ForwardBuffer(path) as buf:
        buf.append("temp", {"c": 20.5}, event_id="a")
        buf.append("temp", {"c": 21.0}, event_id="b")
        buf.append("door", {"open": True})
    return path


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"kernos-edge {__version__}"


def test_help_says_what_the_edge_agent_is() -> None:
    for args in (["--help"], []):
        result = invoke(*args)
        assert result.exit_code == 0
        assert "edge agent" in result.stdout
        assert "store-and-forward" in result.stdout
        assert "buffer" in result.stdout


def test_buffer_stats_json(buffer_file: Path) -> None:
    with ForwardBuffer(buffer_file) as buf:
        first, *_, last = (event.seq for event in buf.peek(10))
    result = invoke("buffer", "stats", "--buffer", str(buffer_file), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["buffer"] == str(buffer_file)
    assert document["count"] == 3
    assert document["oldest_seq"] == first
    assert document["newest_seq"] == last
    assert document["bytes_on_disk"] > 0
    assert document["oldest_age_s"] >= 0


def test_buffer_stats_text(buffer_file: Path) -> None:
    result = invoke("buffer", "stats", "--buffer", str(buffer_file))
    assert result.exit_code == 0, result.output
    assert "events:        3" in result.stdout


def test_missing_buffer_file_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    for command in (["stats"], ["drain", "--yes"]):
        line = assert_one_line_error(invoke("buffer", *command, "--buffer", str(missing)))
        assert str(missing) in line
    assert not missing.exists()


def test_file_that_is_not_a_buffer_is_a_one_line_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite\n" * 100)
    line = assert_one_line_error(invoke("buffer", "stats", "--buffer", str(junk)))
    assert "not a Kernos edge buffer" in line


@pytest.mark.parametrize(
    "args",
    [
        ["buffer", "stats"],  # --buffer missing
        ["buffer", "stats", "--bogus"],
        ["buffer", "nosuch"],
        ["--nosuch"],
    ],
)
def test_usage_errors_are_one_line(args: list[str]) -> None:
    assert_one_line_error(invoke(*args))


def test_drain_needs_yes_and_discards_everything(buffer_file: Path) -> None:
    line = assert_one_line_error(invoke("buffer", "drain", "--buffer", str(buffer_file)))
    assert "--yes" in line
    with ForwardBuffer(buffer_file) as buf:
        assert len(buf) == 3

    result = invoke("buffer", "drain", "--buffer", str(buffer_file), "--yes")
    assert result.exit_code == 0, result.output
    assert "discarded 3 " in result.stdout
    with ForwardBuffer(buffer_file) as buf:
        assert len(buf) == 0

    result = invoke("buffer", "drain", "--buffer", str(buffer_file), "--yes")
    assert result.exit_code == 0
    assert "discarded 0 " in result.stdout
