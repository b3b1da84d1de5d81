"""Shared fixtures: every test that takes ``kernos_settings``/``kernos_kernel`` runs on SQLite
and on PostgreSQL (a fresh database per test on the server ``scripts/services.sh`` started)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL = os.environ.get("KERNOS_TEST_PG_URL")


def free_port() -> int:
    """A TCP port nobody listens on right now (for kernels that serve the API in tests)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _api_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels started by a test (in or out of process) never fight over port 8787."""
    monkeypatch.setenv("KERNOS_API_PORT", str(free_port()))


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The throwaway PostgreSQL server's URL; CI fails rather than skips without it."""
    if not PG_URL:
        message = "no PostgreSQL: run the tests through `make test` (scripts/services.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return PG_URL


@pytest.fixture(scope="session")
def mqtt_url() -> str:
    """The throwaway mosquitto broker's URL (``mqtt://127.0.0.1:PORT``); CI fails rather than
    skips without it. Tests share it: use topics and client ids of their own."""
    url = os.environ.get("KERNOS_TEST_MQTT_URL")
    if not url:
        message = "no MQTT broker: run the tests through `make test` (scripts/services.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


def _admin_conninfo(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_database_url(pg_server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"kernos_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_conninfo(pg_server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_admin_conninfo(pg_server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def kernos_database_url(request: pytest.FixtureRequest) -> str | None:
    """Overrides the testing plugin's fixture: run each storage/kernel test on both backends."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_database_url")


@pytest.fixture(scope="session")
def hello_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` examples/kernos-hello into a private target directory, once per run.

    Put it on ``PYTHONPATH`` (subprocesses) or ``sys.path`` to make the plugin installed;
    the test virtualenv itself stays clean.
    """
    root = Path(__file__).resolve().parents[1]
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "kernos-hello"
    subprocess.run(["cp", "-r", str(root / "examples" / "kernos-hello"), str(source)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
    )
    return target


KERNOS_BIN = str(Path(sys.executable).with_name("kernos"))
"""The installed ``kernos`` command of this virtual environment."""


class ServedKernel:
    """A ``kernos serve`` subprocess on a free port, and a way to run CLI commands against it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def kernos(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``kernos ARGS`` as a client of this kernel."""
        return subprocess.run(
            [KERNOS_BIN, *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=60
        )


@contextlib.contextmanager
def served_kernel(home: Path, **settings: str) -> Iterator[ServedKernel]:
    """Start ``kernos serve`` on ``home`` (extra ``KERNOS_*`` settings as keyword arguments,
    ``api_port`` included if wanted), wait until its API is up, stop it afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
    env |= {"KERNOS_HOME": str(home), "KERNOS_API_PORT": str(free_port())}
    env |= {f"KERNOS_{key.upper()}": value for key, value in settings.items()}
    server = subprocess.Popen(
        [KERNOS_BIN, "serve", "--headless", "--duration", "120"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        seen = []
        for line in server.stderr:
            seen.append(line)
            if "API on" in line:
                break
        else:
            raise AssertionError("kernos serve did not start:\n" + "".join(seen))
        # Keep reading its stderr, so a chatty server never blocks on a full pipe.
        threading.Thread(target=server.stderr.read, daemon=True).start()
        yield ServedKernel(env)
    finally:
        server.terminate()
        server.wait(timeout=30)
