"""One kernel per database: the lease refuses a second kernel and dies with the first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernos.kernel.errors import LeaseHeld
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import Settings

KERNOS = str(Path(sys.executable).with_name("kernos"))


async def test_a_second_kernel_is_refused_until_the_first_stops(kernos_settings: Settings) -> None:
    first = Kernel(kernos_settings, plugins=PluginManager(entry_points=False))
    await first.start()
    try:
        second = Kernel(kernos_settings, plugins=PluginManager(entry_points=False))
        with pytest.raises(LeaseHeld, match=rf"pid {os.getpid()}\b|pid={os.getpid()}\b"):
            await second.start()
        assert not second.running
    finally:
        await first.stop()
    third = Kernel(kernos_settings, plugins=PluginManager(entry_points=False))
    await third.start()
    await third.stop()


def _env(settings: Settings) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("KERNOS_") or k == "KERNOS_API_PORT"
    }
    env["KERNOS_HOME"] = str(settings.home)
    if settings.database_url:
        env["KERNOS_DATABASE_URL"] = settings.database_url
    return env


def _wait_until_running(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if " running on " in line:
            return
    proc.kill()
    raise AssertionError("kernel did not start:\n" + "".join(seen))


@pytest.mark.slow
def test_cli_refuses_a_second_kernel_and_recovers_from_kill_9(kernos_settings: Settings) -> None:
    env = _env(kernos_settings)
    first = subprocess.Popen(
        [KERNOS, "up", "--headless", "--duration", "300"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait_until_running(first)
        second = subprocess.run(
            [KERNOS, "up", "--headless", "--duration", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 4, second.stderr
        error_lines = [ln for ln in second.stderr.splitlines() if ln.startswith("kernos: error:")]
        assert len(error_lines) == 1
        assert "in use by" in error_lines[0] and str(first.pid) in error_lines[0]

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        started = time.monotonic()
        third = subprocess.run(
            [KERNOS, "up", "--headless", "--duration", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert third.returncode == 0, third.stderr
        # "At once": no waiting for a stale lease to expire.
        assert time.monotonic() - started < 30
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


async def test_a_lost_lease_stops_the_running_kernel(kernos_settings: Settings) -> None:
    """A deleted lease file (SQLite) or a dropped lease connection (PostgreSQL)."""
    import asyncio

    from kernos.kernel.errors import LeaseLost

    kernel = Kernel(kernos_settings, plugins=PluginManager(entry_points=False))
    kernel.lease_check_seconds = 0.05
    run = asyncio.create_task(kernel.run())
    await asyncio.wait_for(kernel.ready.wait(), timeout=30)
    if kernos_settings.is_sqlite:
        (kernos_settings.home / "kernos.db.lease").unlink()
        expected = "removed or replaced"
    else:
        import psycopg

        dsn = kernos_settings.db_url.set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE %s",
                (f"kernos pid={os.getpid()} %",),
            )
        expected = "lease connection to PostgreSQL failed|no longer held"
    with pytest.raises(LeaseLost, match=expected):
        await asyncio.wait_for(run, timeout=30)
    assert not kernel.running
