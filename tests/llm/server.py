"""Start the real CPU LLM server the tests and ``bench/llm_backends.py`` talk to.

``transformers serve`` on the tiny model ``build_tiny_model.py`` makes, run from ``.venv-llm``
(``scripts/llm_server.sh setup`` creates it; ``make test`` runs that first).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
LLM_VENV = ROOT / ".venv-llm"
MODEL_DIR = LLM_VENV / "models" / "tiny-llama"
SCRIPT = ROOT / "scripts" / "llm_server.sh"


def venv_problem() -> str | None:
    """Why the server cannot start here, or ``None`` when ``.venv-llm`` is ready."""
    if not (LLM_VENV / "bin" / "transformers").exists():
        return f"no {LLM_VENV.name}: run scripts/llm_server.sh setup (make test does)"
    if not (LLM_VENV / ".kernos-llm-installed").exists():
        return f"{LLM_VENV.name} is incomplete: run scripts/llm_server.sh setup again"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LLMServer:
    """A running ``transformers serve``: its base URL (``…/v1``) and the model id it serves."""

    base_url: str
    model: str
    port: int
    log: Path


@contextlib.contextmanager
def llm_server(
    log_dir: Path, *, continuous_batching: bool = False, startup_seconds: float = 180.0
) -> Iterator[LLMServer]:
    """Build the tiny model if needed, serve it on a free port, wait for ``/health``, and
    stop the server afterwards. Raises ``RuntimeError`` (with the server's log) if it does
    not come up."""
    port = _free_port()
    log = log_dir / f"llm-server-{port}.log"
    args = [str(SCRIPT), "serve", str(MODEL_DIR), str(port)]
    if continuous_batching:
        args.append("--continuous-batching")
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT
        )
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the LLM server exited ({process.returncode}):\n{log.read_text()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the LLM server did not come up:\n{log.read_text()}")
            time.sleep(0.25)
        yield LLMServer(
            base_url=f"http://127.0.0.1:{port}/v1", model=str(MODEL_DIR), port=port, log=log
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
