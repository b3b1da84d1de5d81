"""``OpenAIEmbedder``: vectors from any OpenAI-compatible ``/v1/embeddings`` server.

vLLM (``--task embed``), Text Embeddings Inference, llama.cpp's server and OpenAI itself all
answer ``POST {base_url}/embeddings`` with ``{"data": [{"index", "embedding"}, ...]}``.
Selected with ``KERNOS_MEMORY_EMBEDDER=openai``, ``KERNOS_EMBEDDING_BASE_URL`` (``…/v1``),
``KERNOS_EMBEDDING_MODEL`` and, if the server wants one, ``KERNOS_EMBEDDING_API_KEY``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from kernos.kernel.errors import BackendError, BackendUnavailable, ConfigError
from kernos.kernel.memory import Embedder

if TYPE_CHECKING:
    from kernos.kernel.settings import Settings

BATCH_SIZE = 256
"""Texts per request (servers bound a request's size)."""


class OpenAIEmbedder(Embedder):
    """An embeddings client (synchronous: the memory service runs it off the event loop)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{model}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout, headers=headers, transport=transport)
        self._dimension: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIEmbedder:
        """The embedder of ``embedding_base_url`` and ``embedding_model`` (both required)."""
        if not settings.embedding_base_url or not settings.embedding_model:
            raise ConfigError(
                "the openai embedder needs KERNOS_EMBEDDING_BASE_URL (…/v1) and "
                "KERNOS_EMBEDDING_MODEL"
            )
        key = settings.embedding_api_key
        return cls(
            settings.embedding_base_url,
            settings.embedding_model,
            api_key=key.get_secret_value() if key is not None else None,
        )

    @property
    def dimension(self) -> int:
        """The length of the server's vectors (asked once, with a one-word text)."""
        if self._dimension is None:
            self.embed(["dimension"])
        assert self._dimension is not None
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order, in batches of ``BATCH_SIZE``."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH_SIZE):
            vectors.extend(self._request(list(texts[start : start + BATCH_SIZE])))
        if vectors:
            with self._lock:
                self._dimension = len(vectors[0])
        return vectors

    def _request(self, batch: list[str]) -> list[list[float]]:
        url = f"{self.base_url}/embeddings"
        try:
            response = self._http.post(url, json={"model": self.model, "input": batch})
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"cannot reach the embeddings server {url}: {exc}") from exc
        if response.is_error:
            status = response.status_code
            raise BackendError(
                f"the embeddings server {url} answered HTTP {status}: {response.text[:200]}",
                retryable=status == 429 or status >= 500,
                status=status,
            )
        data: list[dict[str, Any]] = response.json().get("data") or []
        if len(data) != len(batch):
            raise BackendError(
                f"the embeddings server returned {len(data)} vectors for {len(batch)} texts",
                retryable=False,
            )
        ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
        return [[float(x) for x in item["embedding"]] for item in ordered]

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
