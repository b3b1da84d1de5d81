"""Start the real KServe v2 server (MLServer, from ``.venv-kserve``) the tests talk to.

``scripts/kserve_server.sh setup`` creates the virtualenv (``make test`` runs it first);
``kserve_server`` serves a model repository ``kernos models export`` wrote, over HTTP and gRPC
on free ports, and stops the server afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
KSERVE_VENV = ROOT / ".venv-kserve"
SCRIPT = ROOT / "scripts" / "kserve_server.sh"


def venv_problem() -> str | None:
    """Why MLServer cannot start here, or ``None`` when ``.venv-kserve`` is ready."""
    if not (KSERVE_VENV / "bin" / "mlserver").exists():
        return f"no {KSERVE_VENV.name}: run scripts/kserve_server.sh setup (make test does)"
    if not (KSERVE_VENV / ".kernos-kserve-installed").exists():
        return f"{KSERVE_VENV.name} is incomplete: run scripts/kserve_server.sh setup again"
    return None


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class KServeServer:
    """A running MLServer: where it listens and the file its runtime logs ``traceparent`` to."""

    http_url: str
    grpc_url: str
    log: Path
    headers: Path

    def traceparents(self) -> list[str]:
        """The ``traceparent`` of every request the server answered, oldest first."""
        if not self.headers.exists():
            return []
        return self.headers.read_text().split()


@contextlib.contextmanager
def kserve_server(
    repository: Path, log_dir: Path, *, models: int = 1, startup_seconds: float = 120.0
) -> Iterator[KServeServer]:
    """Serve ``repository``, wait until ``models`` model versions are ready, stop afterwards.
    Raises ``RuntimeError`` (with the server's log) if it does not come up."""
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    log = log_dir / f"mlserver-{http_port}.log"
    headers = log_dir / f"mlserver-{http_port}.traceparents"
    env = {
        **os.environ,
        "KERNOS_KSERVE_HEADER_LOG": str(headers),
        "MLSERVER_METRICS_PORT": str(metrics_port),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SCRIPT), "serve", str(repository), str(http_port), str(grpc_port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
        )
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"MLServer exited ({process.returncode}):\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                index = httpx.post(f"{base}/v2/repository/index", json={}, timeout=2)
                ready = [m for m in index.json() if m.get("state") == "READY"]
                if index.status_code == 200 and len(ready) >= models:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"MLServer did not come up:\n{log.read_text()}")
            time.sleep(0.25)
        yield KServeServer(
            http_url=base, grpc_url=f"grpc://127.0.0.1:{grpc_port}", log=log, headers=headers
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
