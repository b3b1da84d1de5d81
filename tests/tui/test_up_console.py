"""``kernos up`` on a terminal opens the console in front of the kernel; quitting the console
stops the kernel cleanly — driven through a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from kernos.kernel.settings import load_settings
from tests.conftest import KERNOS_BIN, free_port


def read_until(fd: int, needle: bytes, *, seconds: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if needle in seen:
                return seen
    raise AssertionError(f"{needle!r} never appeared; the terminal showed:\n{seen[-3000:]!r}")


def test_up_on_a_terminal_opens_the_console_and_quitting_stops_the_kernel(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
    env |= {
        "KERNOS_HOME": str(home),
        "KERNOS_API_PORT": str(free_port()),
        "TERM": "xterm-256color",
        "COLUMNS": "100",
        "LINES": "30",
    }
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [KERNOS_BIN, "up"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        close_fds=True,
    )
    os.close(secondary)
    try:
        read_until(primary, b"Processes", seconds=90)  # the console's first screen
        assert process.poll() is None
        os.write(primary, b"q")
        tail = read_until(primary, b"stopped after", seconds=60)  # the kernel's summary
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(primary)
    assert b"admin key" in tail.lower() or b"kn_" in tail  # the first start's key, after the UI
    assert load_settings(home=home).home == home and (home / "kernos.db").exists()
