"""``/readyz`` checks the configured LLM backends: ready while any of them answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.kernel import Kernel
from kernos.kernel.llm import BackendKind, ChatChunk, ChatRequest, ChatResponse, LLMBackend
from kernos.kernel.pluginmanager import PluginManager
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


class Counting(LLMBackend):
    """An LLM stand-in that counts its health checks."""

    checks = 0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError

    async def models(self) -> list[str]:
        return ["m"]

    async def health(self) -> None:
        Counting.checks += 1


class CountingKind:
    @hookimpl
    def register_llm_backends(self, register: Any) -> None:
        register(BackendKind(name="counting", build=Counting))


async def test_backend_checks_are_reused_for_a_few_seconds(kernos_home: Path) -> None:
    port = free_port()
    plugins = PluginManager(entry_points=False)
    plugins.add(CountingKind(), name="counting")
    settings = load_settings(
        home=kernos_home, api_port=port, llm_backends=[{"name": "c", "kind": "counting"}]
    )
    kernel = Kernel(settings, plugins=plugins, serve_api=True)
    await kernel.start()
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(5):  # an anonymous caller polling hard
                response = await http.get(f"http://127.0.0.1:{port}/readyz")
                assert response.json()["checks"]["llm:c"] == "ok"
    finally:
        await kernel.stop()
    assert Counting.checks == 1
