"""``/readyz`` checks the configured LLM backends: ready while any of them answers."""

from __future__ import annotations

from pathlib import Path

import httpx

from kernos.kernel.kernel import Kernel
from kernos.kernel.settings import load_settings
from tests.api.test_api import assert_problem, free_port


async def readyz(home: Path, backends: list[dict[str, object]]) -> httpx.Response:
    port = free_port()
    kernel = Kernel(load_settings(home=home, api_port=port, llm_backends=backends), serve_api=True)
    await kernel.start()
    try:
        async with httpx.AsyncClient() as http:
            return await http.get(f"http://127.0.0.1:{port}/readyz")
    finally:
        await kernel.stop()


async def test_ready_while_one_backend_answers(kernos_home: Path) -> None:
    down = {
        "name": "down",
        "kind": "openai_compat",
        "base_url": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
        "model": "m",
    }
    response = await readyz(kernos_home, [{"name": "sim", "kind": "sim-llm"}, down])
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert checks["llm:sim"] == "ok"
    assert checks["llm:down"].startswith("failed")


async def test_not_ready_when_no_backend_answers(kernos_home: Path) -> None:
    down = {
        "name": "down",
        "kind": "openai_compat",
        "base_url": f"http://127.0.0.1:{free_port()}/v1",
        "model": "m",
    }
    body = assert_problem(await readyz(kernos_home, [down]), 503, "kernel_unavailable")
    assert "llm:down failed" in body["detail"]
