"""``ChromaStore``: long-term memory in ChromaDB, one collection per tenant (and agent) scope.

Embedded by default (a ``PersistentClient`` in ``KERNOS_HOME/memory``), or a Chroma server
when ``KERNOS_MEMORY_URL`` is set (``HttpClient``). Kernos embeds texts itself and hands
Chroma the vectors, so Chroma's own embedding function (which would try to download a model)
is never used. A Chroma collection's name is derived from the scope: a readable part and a
digest of (tenant, agent, collection), so two scopes can never share a collection however
their names are spelled; the scope is also kept in the collection's metadata, with the
embedder that wrote it (vectors of two different models are never mixed).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kernos.kernel.errors import BackendUnavailable, ConfigError, InvalidInput
from kernos.kernel.memory import Embedder, MemoryHit, MemoryScope, MemoryStore, Metadata, Where

if TYPE_CHECKING:
    from kernos.kernel.settings import Settings

_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
_ADD_BATCH = 4096  # below Chroma's max batch size on every backend


def collection_name(scope: MemoryScope) -> str:
    """The Chroma collection of ``scope``: ``kernos-<tenant>-<collection>-<digest>``.

    Always a valid Chroma name (3-512 characters of ``[A-Za-z0-9-]``, alphanumeric at both
    ends); the digest of the scope's key keeps distinct scopes apart.
    """
    readable = _UNSAFE.sub("-", f"{scope.tenant}-{scope.collection}")[:200].strip("-")
    digest = hashlib.sha256(scope.key.encode()).hexdigest()[:20]
    return f"kernos-{readable}-{digest}"


class ChromaStore(MemoryStore):
    """A ``MemoryStore`` on a Chroma client (embedded or remote)."""

    name = "chroma"

    def __init__(self, client: Any, *, embedder: str, dimension: int | None = None) -> None:
        self._client = client
        self._embedder = embedder
        self._dimension = dimension
        self._collections: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, embedder: Embedder) -> ChromaStore:
        """An embedded client in ``home/memory``, or an ``HttpClient`` to ``memory_url``."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        if settings.memory_url:
            parts = urlsplit(settings.memory_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"KERNOS_MEMORY_URL {settings.memory_url!r} is not an http(s) URL of a "
                    "Chroma server (http://host:8000)"
                )
            try:
                client = chromadb.HttpClient(
                    host=parts.hostname,
                    port=parts.port or (443 if parts.scheme == "https" else 8000),
                    ssl=parts.scheme == "https",
                    settings=chroma_settings,
                )
            except Exception as exc:
                raise BackendUnavailable(
                    f"cannot reach the Chroma server at {settings.memory_url}: {exc}"
                ) from exc
        else:
            path = Path(settings.home) / "memory"
            path.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
        return cls(client, embedder=embedder.name)

    # -- Collections ----------------------------------------------------------------------

    def _collection(self, scope: MemoryScope, *, create: bool) -> Any | None:
        name = collection_name(scope)
        with self._lock:
            found = self._collections.get(name)
            if found is not None:
                return found
            if create:
                found = self._client.get_or_create_collection(
                    name,
                    embedding_function=None,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata={
                        "kernos_tenant": scope.tenant,
                        "kernos_collection": scope.collection,
                        "kernos_agent": scope.agent or "",
                        "kernos_embedder": self._embedder,
                    },
                )
            else:
                try:
                    found = self._client.get_collection(name, embedding_function=None)
                except Exception as exc:
                    if _is_missing(exc):
                        return None
                    raise
            written_by = (found.metadata or {}).get("kernos_embedder")
            if written_by and written_by != self._embedder:
                raise ConfigError(
                    f"memory collection {scope.collection!r} holds vectors of the embedder "
                    f"{written_by!r}, not {self._embedder!r}: switch KERNOS_MEMORY_EMBEDDER back "
                    "or use a new collection"
                )
            self._collections[name] = found
            return found

    # -- MemoryStore ----------------------------------------------------------------------

    def put(
        self,
        scope: MemoryScope,
        *,
        ids: Sequence[str],
        texts: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        metadatas: Sequence[Metadata | None],
    ) -> None:
        """Upsert in batches (Chroma bounds a batch's size)."""
        collection = self._collection(scope, create=True)
        assert collection is not None
        for start in range(0, len(ids), _ADD_BATCH):
            end = start + _ADD_BATCH
            batch_meta = list(metadatas[start:end])
            collection.upsert(
                ids=list(ids[start:end]),
                documents=list(texts[start:end]),
                embeddings=list(embeddings[start:end]),
                # Chroma refuses a list of all-None metadatas; omit them instead.
                metadatas=batch_meta if any(m for m in batch_meta) else None,
            )

    def search(
        self, scope: MemoryScope, embedding: Sequence[float], *, limit: int, where: Where | None
    ) -> list[MemoryHit]:
        """Nearest first, by cosine distance."""
        collection = self._collection(scope, create=False)
        if collection is None:
            return []
        try:
            found = collection.query(
                query_embeddings=[list(embedding)],
                n_results=limit,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
        except Exception as exc:
            raise _invalid_filter(exc, where) from exc
        ids = found["ids"][0]
        documents = (found.get("documents") or [[]])[0] or [""] * len(ids)
        metadatas = (found.get("metadatas") or [[]])[0] or [None] * len(ids)
        distances = (found.get("distances") or [[]])[0] or [0.0] * len(ids)
        return [
            MemoryHit(id=i, text=d or "", metadata=dict(m or {}), distance=float(x))
            for i, d, m, x in zip(ids, documents, metadatas, distances, strict=True)
        ]

    def forget(self, scope: MemoryScope, *, ids: Sequence[str] | None, where: Where | None) -> int:
        """Delete the matching documents; returns how many there were."""
        collection = self._collection(scope, create=False)
        if collection is None:
            return 0
        try:
            matched = collection.get(ids=list(ids) if ids else None, where=where, include=[])
        except Exception as exc:
            raise _invalid_filter(exc, where) from exc
        found: list[str] = matched["ids"]
        if found:
            collection.delete(ids=found)
        return len(found)

    def count(self, scope: MemoryScope) -> int:
        """Documents in the scope's collection."""
        collection = self._collection(scope, create=False)
        return 0 if collection is None else int(collection.count())

    def get(
        self,
        scope: MemoryScope,
        *,
        ids: Sequence[str] | None,
        where: Where | None,
        limit: int,
        offset: int = 0,
    ) -> list[MemoryHit]:
        """Documents by id and/or filter, in Chroma's order."""
        collection = self._collection(scope, create=False)
        if collection is None:
            return []
        try:
            found = collection.get(
                ids=list(ids) if ids is not None else None,
                where=where,
                limit=limit,
                offset=offset or None,
                include=["documents", "metadatas"],
            )
        except Exception as exc:
            raise _invalid_filter(exc, where) from exc
        ids_found: list[str] = found["ids"]
        documents = found.get("documents") or [""] * len(ids_found)
        metadatas = found.get("metadatas") or [None] * len(ids_found)
        return [
            MemoryHit(id=i, text=d or "", metadata=dict(m or {}))
            for i, d, m in zip(ids_found, documents, metadatas, strict=True)
        ]

    def collections(self, tenant: str, *, agent: str | None) -> list[str]:
        """The scope's collections with documents, found by the scope kept in each Chroma
        collection's metadata (one listing of the client's collections)."""
        names = set()
        for found in self._client.list_collections():
            meta = found.metadata or {}
            if (
                meta.get("kernos_tenant") == tenant
                and (meta.get("kernos_agent") or None) == agent
                and meta.get("kernos_collection")
                and found.count() > 0
            ):
                names.add(str(meta["kernos_collection"]))
        return sorted(names)

    def close(self) -> None:
        """Forget cached collection handles (the client itself holds no open sockets)."""
        with self._lock:
            self._collections.clear()


def _is_missing(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "notfound" in text.replace(" ", "") or "does not exist" in text


def _invalid_filter(exc: Exception, where: Where | None) -> Exception:
    text = str(exc)
    if where is not None and ("where" in text.lower() or "Expected" in text):
        return InvalidInput(f"invalid where filter {where!r}: {text}")
    return exc
