"""The kernos CLI: help, version, exit statuses and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernos.kernel import cli as cli_module
from kernos.kernel import pluginmanager
from kernos.kernel.pluginmanager import Builtin
from kernos.kernel.storage import migrate

KERNOS = str(Path(sys.executable).with_name("kernos"))


def run(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("KERNOS_") or k == "KERNOS_API_PORT"
    }
    base["KERNOS_HOME"] = str(home)
    base.update(env or {})
    return subprocess.run([KERNOS, *args], env=base, capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands_and_exit_statuses(tmp_path: Path) -> None:
    result = run("--help", home=tmp_path)
    assert result.returncode == 0
    for command in ("up", "init", "plugins"):
        assert f"  {command} " in result.stdout
    assert "4 kernel unavailable" in result.stdout.replace("\n  ", " ")


def test_version(tmp_path: Path) -> None:
    result = run("--version", home=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "kernos 0.1.0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("frobnicate",), "No such command 'frobnicate'"),
        (("up", "--duration", "soon"), "'soon' is not a valid float"),
        (("up", "--bogus"), "No such option '--bogus'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run(*args, home=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kernos: error: ")
    assert message in lines[0]


def test_an_invalid_setting_is_exit_2(tmp_path: Path) -> None:
    result = run("up", "--headless", "--duration", "0", home=tmp_path, env={"KERNOS_API_PORT": "x"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "kernos: error: invalid settings: KERNOS_API_PORT: Input should be a valid integer, "
        "unable to parse string as an integer (got 'x')"
    ]


def test_an_unreadable_toml_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "kernos.toml").write_text("[broken\n")
    result = run("init", home=tmp_path)
    assert result.returncode == 2
    assert "invalid TOML" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_up_initializes_an_empty_home_and_prints_a_summary(tmp_path: Path) -> None:
    home = tmp_path / "new-home"
    result = run("up", "--headless", "--duration", "0.2", "--json", home=home)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["tenants"] == ["default"]
    assert summary["schema"] == migrate.head_revision()
    assert "kernos.kernel.cli.commands" in summary["plugins_loaded"]
    assert (home / "kernos.db").exists()
    assert (home / "logs" / "kernos.log").exists()
    assert "denied" not in result.stderr.lower()
    again = run("init", "--json", home=home)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["admin"] == "admin"


def test_a_newer_schema_is_refused_with_exit_2(tmp_path: Path) -> None:
    import sqlite3

    assert run("init", home=tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "kernos.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0042'")
    result = run("up", "--headless", "--duration", "0", home=tmp_path)
    assert result.returncode == 2
    assert "schema revision '0042', newer than this Kernos knows" in result.stderr


def _up_with_builtin(tmp_path: Path, monkeypatch, source: str, *, essential: bool) -> int:
    """Run ``kernos up`` in-process with one more built-in plugin, written from ``source``."""
    (tmp_path / "extra_builtin.py").write_text(
        "from kernos.kernel.hookspecs import hookimpl\n@hookimpl\n" + source
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "extra_builtin", raising=False)
    monkeypatch.setenv("KERNOS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(
        pluginmanager,
        "BUILTIN_PLUGINS",
        (*pluginmanager.BUILTIN_PLUGINS, Builtin("extra_builtin", essential=essential)),
    )
    # The root group caches the commands it collected; make it collect again, and after.
    monkeypatch.setattr(cli_module.cli, "_registry", None)
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(["up", "--headless", "--duration", "0"])
    cli_module.cli._registry = None
    return int(exit_info.value.code or 0)


def test_a_broken_essential_plugin_stops_startup(tmp_path: Path, monkeypatch, capsys) -> None:
    source = (
        "def on_startup(kernel):\n"
        "    raise RuntimeError('policy file policy/default.csv is missing')\n"
    )
    assert _up_with_builtin(tmp_path, monkeypatch, source, essential=True) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "kernos: error: essential plugin 'extra_builtin' failed in on_startup: RuntimeError: "
        "policy file policy/default.csv is missing; the kernel cannot start without it. "
        "Reinstall Kernos or fix the plugin."
    )


def test_a_raising_optional_plugin_is_skipped_with_its_name(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    source = (
        "def register_tools(register):\n"
        "    raise ConnectionError('MQTT broker at 127.0.0.1:1883 refused the connection')\n"
    )
    assert _up_with_builtin(tmp_path, monkeypatch, source, essential=False) == 0
    captured = capsys.readouterr()
    assert (
        "kernos: warning: plugin 'extra_builtin' skipped: failed in register_tools: "
        "ConnectionError: MQTT broker at 127.0.0.1:1883 refused the connection"
    ) in captured.err
    assert "extra_builtin (failed in register_tools" in captured.out


def test_sigterm_stops_the_kernel_cleanly(tmp_path: Path) -> None:
    import signal

    env = {
        k: v for k, v in os.environ.items() if not k.startswith("KERNOS_") or k == "KERNOS_API_PORT"
    }
    env["KERNOS_HOME"] = str(tmp_path)
    proc = subprocess.Popen(
        [KERNOS, "up", "--headless", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if " running on " in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert json.loads(out)["tenants"] == ["default"]


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from kernos.kernel.cli import cli\n"
        "cli.main(['--help'], standalone_mode=False)\n"
        "heavy = [m for m in ('sqlalchemy', 'pydantic', 'langgraph', 'langchain_core', 'alembic',"
        " 'fastapi', 'textual', 'opentelemetry.sdk') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_duration_must_be_a_number(tmp_path: Path) -> None:
    result = run("up", "--headless", "--duration", "nan", home=tmp_path)
    assert result.returncode == 2
