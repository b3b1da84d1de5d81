"""CLI commands as clients of a running `kernos serve` (real processes, real HTTP).

The kernel runs the example plugin (examples/kernos-hello, pip-installed into a private
directory): its `hello` agent greets through its governed `hello_greet` tool.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kernos.kernel.cli.processes import STATES
from kernos.kernel.processes import ProcessState

ROOT = Path(__file__).resolve().parents[2]
KERNOS = str(Path(sys.executable).with_name("kernos"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def plugin_site(hello_plugin_site: Path) -> Path:
    """The example plugin, pip-installed into a private target directory (conftest)."""
    return hello_plugin_site


def environment(home: Path, port: int, site: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
    env["KERNOS_HOME"] = str(home)
    env["KERNOS_API_PORT"] = str(port)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return env


@dataclass
class Server:
    home: Path
    port: int
    env: dict[str, str]

    def kernos(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [KERNOS, *args], env=env or self.env, capture_output=True, text=True, timeout=120
        )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kernos: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def server(plugin_site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`kernos serve --headless` on a free port, stopped with SIGTERM after the module."""
    home = tmp_path_factory.mktemp("home")
    port = free_port()
    env = environment(home, port, plugin_site)
    proc = subprocess.Popen(
        [KERNOS, "serve", "--headless"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"kernos serve exited {proc.returncode}: {proc.stderr.read()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("kernos serve did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield Server(home=home, port=port, env=env)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0


def test_run_waits_and_prints_the_greeting(server: Server) -> None:
    result = server.kernos("run", "hello", "--input", '{"name":"Ada"}', "--wait", "--json")
    assert result.returncode == 0, result.stderr
    process = json.loads(result.stdout)
    assert process["state"] == "done" and process["agent"] == "hello"
    assert process["output"] == {"name": "Ada", "greeting": "Hello, Ada!"}
    assert process["usage"]["tool_calls"] == 1
    plain = server.kernos("run", "hello", "--input", '{"name":"Grace"}', "--wait")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["greeting"] == "Hello, Grace!"


def test_run_without_wait_prints_pid_and_state(server: Server) -> None:
    result = server.kernos("run", "hello", "--input", '{"name":"Bo"}')
    assert result.returncode == 0, result.stderr
    pid, state = result.stdout.split(maxsplit=1)
    assert int(pid) > 0 and state.strip() in ("pending", "running", "done")


def test_ps_lists_processes(server: Server) -> None:
    ran = json.loads(
        server.kernos("run", "hello", "--input", '{"name":"Cy"}', "--wait", "--json").stdout
    )
    listed = server.kernos("ps", "--json")
    assert listed.returncode == 0, listed.stderr
    processes = json.loads(listed.stdout)
    assert ran["pid"] in [p["pid"] for p in processes]
    assert [p["pid"] for p in processes] == sorted((p["pid"] for p in processes), reverse=True)
    table = server.kernos("ps", "--state", "done")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["PID", "AGENT", "STATE", "WAITING", "OWNER", "TOKENS", "TOOLS", "AGE"]
    assert any(row.split()[:3] == [str(ran["pid"]), "hello", "done"] for row in rows)
    assert all(row.split()[2] == "done" for row in rows)


def test_signals_on_a_finished_process(server: Server) -> None:
    ran = json.loads(
        server.kernos("run", "hello", "--input", '{"name":"Di"}', "--wait", "--json").stdout
    )
    pid = str(ran["pid"])
    # Killing a finished process is a no-op that succeeds (the kernel's kill is idempotent,
    # so scripts can make sure a process is gone without checking first).
    killed = server.kernos("kill", pid)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.strip() == f"{pid} done (already finished; nothing to kill)"
    suspended = server.kernos("suspend", pid)
    assert suspended.returncode == 2
    assert "only a live process can suspend" in one_error_line(suspended)
    resumed = server.kernos("resume", pid)
    assert resumed.returncode == 2 and "not suspended" in one_error_line(resumed)
    missing = server.kernos("kill", "99999")
    assert missing.returncode == 2 and "no process 99999" in one_error_line(missing)


def test_approvals_list_and_unknown_ids(server: Server) -> None:
    listed = server.kernos("approvals", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []  # hello never asks a human
    table = server.kernos("approvals", "list", "--status", "all")
    assert table.stdout.split() == ["ID", "PID", "KIND", "STATUS", "AGE", "QUESTION"]
    approve = server.kernos("approvals", "approve", "nope", "--value", '"north"')
    assert approve.returncode == 2 and "no approval 'nope'" in one_error_line(approve)
    deny = server.kernos("approvals", "deny", "nope", "--comment", "no")
    assert deny.returncode == 2
    bad_value = server.kernos("approvals", "approve", "nope", "--value", "{bad")
    assert bad_value.returncode == 2 and "--value is not valid JSON" in one_error_line(bad_value)


def test_bad_input_is_exit_2_with_one_line(server: Server) -> None:
    bad = server.kernos("run", "hello", "--input", "{bad")
    assert bad.returncode == 2
    assert "--input is not valid JSON" in one_error_line(bad)
    array = server.kernos("run", "hello", "--input", "[1, 2]")
    assert array.returncode == 2 and "must be a JSON object" in one_error_line(array)
    schema = server.kernos("run", "hello", "--input", '{"nom":"Ada"}', "--wait")
    # hello has no input schema, so the run is accepted and fails in its tool.
    assert schema.returncode == 1 and "failed" in one_error_line(schema)
    unknown = server.kernos("run", "nope")
    assert unknown.returncode == 2 and "no agent named 'nope'" in one_error_line(unknown)
    timeout = server.kernos("run", "hello", "--timeout", "5")
    assert timeout.returncode == 2 and "--timeout needs --wait" in one_error_line(timeout)


def test_without_a_kernel_commands_say_how_to_start_one(tmp_path: Path) -> None:
    port = free_port()
    for args in (("ps",), ("kill", "1"), ("approvals", "list"), ("run", "hello")):
        result = subprocess.run(
            [KERNOS, *args],
            env=environment(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 4, (args, result.stderr)
        assert one_error_line(result) == (
            f"kernos: error: no kernel is running at http://127.0.0.1:{port}; "
            "start one with `kernos up` (or `kernos serve`)"
        )


def test_a_second_server_is_refused(server: Server, tmp_path: Path) -> None:
    quiet = {**server.env, "KERNOS_LOG_LEVEL": "WARNING"}
    same_home = server.kernos("serve", "--headless", "--duration", "0", env=quiet)
    assert same_home.returncode == 4, same_home.stderr
    assert "is in use by" in one_error_line(same_home)
    other = {**environment(tmp_path, server.port), "KERNOS_LOG_LEVEL": "WARNING"}
    other_home = server.kernos("serve", "--headless", "--duration", "0", env=other)
    assert other_home.returncode == 1, other_home.stderr
    assert one_error_line(other_home) == (
        f"kernos: error: cannot listen on 127.0.0.1:{server.port}: address already in use; "
        "set KERNOS_API_PORT or stop the other server"
    )


def test_a_wrong_token_is_denied(server: Server, tmp_path: Path) -> None:
    (tmp_path / "admin.token").write_text("not-the-token\n")
    result = server.kernos("ps", env=environment(tmp_path, server.port))
    assert result.returncode == 3
    assert "bearer token is not valid" in one_error_line(result)


@pytest.mark.parametrize(
    "args",
    [
        ("serve",),
        ("run",),
        ("ps",),
        ("kill",),
        ("suspend",),
        ("resume",),
        ("approvals",),
        ("approvals", "list"),
        ("approvals", "approve"),
        ("approvals", "deny"),
        ("events", "list"),
    ],
)
def test_every_command_explains_itself(args: tuple[str, ...]) -> None:
    from click.testing import CliRunner

    from kernos.kernel.cli import cli

    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_the_cli_knows_every_process_state() -> None:
    assert set(STATES) == {state.value for state in ProcessState}


def test_events_list_follows_the_published_events(server: Server) -> None:
    token = (server.home / "admin.token").read_text().strip()
    body = {"events": [{"topic": f"cli.test.{n}", "data": {"n": n}} for n in range(3)]}
    posted = httpx.post(
        f"http://127.0.0.1:{server.port}/v1/events",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert posted.status_code == 202, posted.text
    listed = server.kernos("events", "list", "--topic", "cli.test.*", "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert [e["data"]["n"] for e in found] == [0, 1, 2]
    after = server.kernos(
        "events", "list", "--topic", "cli.test.*", "--after", str(found[0]["seq"]), "--json"
    )
    assert [e["data"]["n"] for e in json.loads(after.stdout)] == [1, 2]
    table = server.kernos("events", "list", "--topic", "cli.test.1")
    assert table.stdout.split()[:5] == ["SEQ", "TOPIC", "SOURCE", "AGE", "DATA"]
    assert "cli.test.1" in table.stdout and "cli.test.2" not in table.stdout
    bad = server.kernos("events", "list", "--topic", "no spaces")
    assert bad.returncode == 2
    assert "topic" in one_error_line(bad)


def test_events_dlq_and_replay(server: Server) -> None:
    listed = server.kernos("events", "dlq", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    table = server.kernos("events", "dlq")
    assert table.stdout.split()[:7] == [
        "ID",
        "TOPIC",
        "EVENT",
        "SUBSCRIBER",
        "TRIES",
        "AGE",
        "LAST",
    ]
    missing = server.kernos("events", "replay", "999")
    assert missing.returncode == 2
    assert "999" in one_error_line(missing)
