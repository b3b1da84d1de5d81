"""Long-term memory's records and interfaces: scopes, hits, ``Embedder``, ``MemoryStore``,
their plugin specs, and the checks every memory call's input passes (``kernos.kernel.memory``
holds the service and the syscalls)."""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kernos.kernel.errors import ConfigError, InvalidInput
from kernos.kernel.syscalls import SyscallKind

if TYPE_CHECKING:
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.settings import Settings

MetadataValue = str | int | float | bool
Metadata = dict[str, MetadataValue]
Where = dict[str, Any]
"""A metadata filter: ``{"kind": "note"}`` (several keys must all match), or Chroma's operator
form (``{"level": {"$gte": 3}}``, ``{"$or": [...]}``)."""

MAX_LIMIT = 100
"""Most hits one search returns."""
MAX_GET = 1_000
"""Most documents one read by id or filter (``memory.get``) returns."""
MAX_DOCUMENTS = 10_000
"""Most documents one put carries."""
MAX_DOCUMENT_CHARS = 100_000
"""Longest document accepted (the embedder reads only its first 256 tokens)."""

_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")
_AGENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_OBJECTS = {
    SyscallKind.MEMORY_PUT: "write",
    SyscallKind.MEMORY_FORGET: "write",
    SyscallKind.MEMORY_SEARCH: "read",
    SyscallKind.MEMORY_GET: "read",
    SyscallKind.MEMORY_LIST: "read",
}


# -- Records -------------------------------------------------------------------------------


def check_collection(name: str) -> str:
    """``name`` if it is a valid collection name, else ``InvalidInput`` saying why.

    3 to 512 characters from letters, digits, ``.``, ``_``, ``-``; starting and ending with a
    letter or digit; no ``..`` (Chroma's own rule, so every name maps to a collection).
    """
    if not isinstance(name, str) or not _COLLECTION.match(name) or ".." in name:
        raise InvalidInput(
            f"collection name {name!r} is invalid: use 3-512 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit (no '..')"
        )
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryScope:
    """Where memories live: a tenant's collection, optionally private to one agent."""

    tenant: str
    collection: str
    agent: str | None = None

    def __post_init__(self) -> None:
        check_collection(self.collection)
        if self.agent is not None and not _AGENT.match(self.agent):
            raise InvalidInput(f"agent scope {self.agent!r} is not an agent name")

    @property
    def key(self) -> str:
        """A stable, unambiguous key of the scope (stores derive their names from it)."""
        return json.dumps([self.tenant, self.agent, self.collection], separators=(",", ":"))

    @property
    def target(self) -> str:
        """What calls on this scope are authorized and audited on (``memory:TARGET``): the
        collection, or ``@AGENT/COLLECTION`` for one private to an agent (so a policy, or an
        agent's manifest, can grant an agent its own collections and nothing else)."""
        return f"@{self.agent}/{self.collection}" if self.agent else self.collection


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryHit:
    """One search result: the document, its metadata and its distance (smaller is closer;
    cosine distance for the built-in store)."""

    id: str
    text: str
    metadata: Metadata = field(default_factory=dict)
    distance: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the API and the syscall return)."""
        return {
            "id": self.id,
            "text": self.text,
            "metadata": dict(self.metadata),
            "distance": self.distance,
        }


# -- Interfaces ----------------------------------------------------------------------------


class Embedder(ABC):
    """Turns texts into vectors. Blocking: the memory service calls it off the event loop."""

    name: str
    """Identifies the model; a store refuses to mix vectors of different embedders."""

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of every vector (may load the model to find out)."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order. Raise ``ConfigError`` when the model is missing,
        ``BackendUnavailable`` when a remote model cannot be reached."""

    def close(self) -> None:
        """Release what the embedder holds (sessions, connections). Default: nothing."""
        return None


class MemoryStore(ABC):
    """Stores documents with their vectors per scope. Blocking, like ``Embedder``."""

    name: str

    @abstractmethod
    def put(
        self,
        scope: MemoryScope,
        *,
        ids: Sequence[str],
        texts: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        metadatas: Sequence[Metadata | None],
    ) -> None:
        """Insert or replace documents by id (the scope's collection is created if new)."""

    @abstractmethod
    def search(
        self, scope: MemoryScope, embedding: Sequence[float], *, limit: int, where: Where | None
    ) -> list[MemoryHit]:
        """The ``limit`` nearest documents matching ``where``, nearest first (``[]`` for a
        collection that does not exist). ``InvalidInput`` for a malformed filter."""

    @abstractmethod
    def forget(self, scope: MemoryScope, *, ids: Sequence[str] | None, where: Where | None) -> int:
        """Delete documents by id or by filter; returns how many were deleted."""

    @abstractmethod
    def count(self, scope: MemoryScope) -> int:
        """Documents in the scope's collection (0 if it does not exist)."""

    def get(
        self,
        scope: MemoryScope,
        *,
        ids: Sequence[str] | None,
        where: Where | None,
        limit: int,
        offset: int = 0,
    ) -> list[MemoryHit]:
        """Documents by id and/or filter, without ranking (distance 0), in the store's order;
        ``[]`` for a collection that does not exist. Default: ``ConfigError`` (a store that
        cannot read by id)."""
        raise ConfigError(f"the memory store {self.name!r} cannot read documents by id")

    def collections(self, tenant: str, *, agent: str | None) -> list[str]:
        """Names of the collections of ``tenant`` (private to ``agent``, or shared when it is
        ``None``) that hold documents, sorted. Default: ``ConfigError``."""
        raise ConfigError(f"the memory store {self.name!r} cannot list its collections")

    def close(self) -> None:
        """Release clients and files. Default: nothing."""
        return None


@dataclass(frozen=True, slots=True)
class EmbedderSpec:
    """An embedder a plugin offers, built on first use: ``register(EmbedderSpec(...))``."""

    name: str
    """What ``KERNOS_MEMORY_EMBEDDER`` selects it by."""
    build: Callable[[Settings], Embedder]
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True, slots=True)
class MemoryStoreSpec:
    """A memory store a plugin offers, built on first use: ``register(MemoryStoreSpec(...))``."""

    name: str
    """What ``KERNOS_MEMORY_STORE`` selects it by."""
    build: Callable[[Settings, Embedder], MemoryStore]
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True, slots=True)
class GraphStoreSpec:
    """A LangGraph ``BaseStore`` a plugin offers for agent graphs:
    ``register(GraphStoreSpec(...))``; the kernel builds the one ``KERNOS_GRAPH_STORE`` names
    once, when it first builds an agent's graph, and gives it to every graph compiled
    without a store of its own."""

    name: str
    """What ``KERNOS_GRAPH_STORE`` selects it by."""
    build: Callable[[Kernel], Any]
    """``build(kernel)`` returns a ``langgraph.store.base.BaseStore``."""
    description: str = ""
    plugin: str = ""


# -- Validation ----------------------------------------------------------------------------


def normalize_where(where: Mapping[str, Any] | None) -> Where | None:
    """A filter in the store's form: several plain keys become an ``$and`` of equalities."""
    if not where:
        return None
    if not isinstance(where, Mapping):
        raise InvalidInput('where must be an object such as {"kind": "note"}')
    plain = {k: v for k, v in where.items() if not k.startswith("$")}
    operators = {k: v for k, v in where.items() if k.startswith("$")}
    clauses = [{k: v} for k, v in plain.items()] + ([operators] if operators else [])
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _check_metadata(metadata: Any, index: int) -> Metadata | None:
    if metadata is None or metadata == {}:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidInput(f"metadata of document {index} must be an object")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or key.startswith(("$", "kernos:")):
            raise InvalidInput(f"metadata key {key!r} of document {index} is not allowed")
        if not isinstance(value, str | int | float | bool):
            raise InvalidInput(
                f"metadata {key!r} of document {index} must be a string, number or boolean"
            )
    return dict(metadata)


def _check_put(
    documents: Sequence[str], ids: Sequence[str] | None, metadatas: Sequence[Any] | None
) -> tuple[list[str], list[Metadata | None]]:
    if isinstance(documents, str) or not documents:
        raise InvalidInput("put needs a non-empty list of documents")
    if len(documents) > MAX_DOCUMENTS:
        raise InvalidInput(f"{len(documents)} documents in one put; at most {MAX_DOCUMENTS}")
    for i, text in enumerate(documents):
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput(f"document {i} is empty or not text")
        if len(text) > MAX_DOCUMENT_CHARS:
            raise InvalidInput(f"document {i} has {len(text)} characters; at most 100,000")
    if ids is not None:
        if len(ids) != len(documents):
            raise InvalidInput(f"{len(ids)} ids for {len(documents)} documents")
        if any(not isinstance(i, str) or not 0 < len(i) <= 256 for i in ids):
            raise InvalidInput("ids must be non-empty strings of at most 256 characters")
        if len(set(ids)) != len(ids):
            raise InvalidInput("ids must be unique within one put")
    if metadatas is not None and len(metadatas) != len(documents):
        raise InvalidInput(f"{len(metadatas)} metadata objects for {len(documents)} documents")
    checked = [_check_metadata(m, i) for i, m in enumerate(metadatas or [None] * len(documents))]
    return list(documents), checked


def derived_ids(seed: str, count: int) -> list[str]:
    """``count`` ids derived from ``seed`` (a syscall or idempotency key): a retried put
    writes the same ids again, so it replaces rather than duplicates."""
    stem = hashlib.sha256(seed.encode()).hexdigest()[:24]
    return [f"{stem}-{i}" for i in range(count)]
