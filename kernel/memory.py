"""Long-term semantic memory: the service and the memory syscalls (the interfaces and records
are in ``kernos.kernel.memory_records``, re-exported here).

The kernel defines what memory is (``Embedder``, ``MemoryStore``, scopes and hits) and how it
is governed; ``kernos.memory`` plugs in ChromaDB and offline embeddings through the
``register_memory_stores`` and ``register_embedders`` hooks, chosen by the settings
``memory_store`` and ``memory_embedder``.

Every access is authorized on the object ``memory:COLLECTION`` (``read`` to search, ``write``
to put and forget) and audited:

* from inside a process, ``memory_put`` / ``memory_search`` / ``memory_forget`` are syscalls
  through the pipeline (authorize → journal and audit → execute), like ``emit_event``;
* from the API, ``MemoryService.put_as`` and friends act as the calling principal: the
  kernel's operator authorization (a denial is audited), an intent record before the effect
  and a result record after it.

Embedders and stores are blocking (ONNX, Chroma's client): the service runs them on its own
small thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.runnables import ensure_config

from kernos.kernel.errors import ConfigError, InvalidInput, KernosError
from kernos.kernel.memory_records import (
    _OBJECTS,
    MAX_DOCUMENT_CHARS,
    MAX_DOCUMENTS,
    MAX_GET,
    MAX_LIMIT,
    Embedder,
    EmbedderSpec,
    MemoryHit,
    MemoryScope,
    MemoryStore,
    MemoryStoreSpec,
    Metadata,
    MetadataValue,
    Where,
    _check_put,
    check_collection,
    derived_ids,
    normalize_where,
)
from kernos.kernel.syscalls import AuditRecord, Syscall, SyscallKind, SyscallResult

if TYPE_CHECKING:
    from kernos.kernel.identity import Principal
    from kernos.kernel.kernel import Kernel

T = TypeVar("T")

STORED_AT = "kernos:stored_at"
"""Metadata every stored document gets: when it was stored (seconds since the epoch, on the
kernel clock). Retention's per-collection time to live reads it; hits leave it out."""


def _public(hits: list[MemoryHit]) -> list[MemoryHit]:
    """``hits`` without the kernel's own ``kernos:`` metadata."""
    return [
        replace(h, metadata={k: v for k, v in h.metadata.items() if not k.startswith("kernos:")})
        if any(k.startswith("kernos:") for k in h.metadata)
        else h
        for h in hits
    ]


# -- The service ---------------------------------------------------------------------------


class MemoryService:
    """A kernel's memory: the selected embedder and store (built on first use), run on a
    small thread pool, with governed entry points for operators."""

    def __init__(
        self,
        kernel: Kernel,
        *,
        stores: Sequence[MemoryStoreSpec],
        embedders: Sequence[EmbedderSpec],
        workers: int = 2,
    ) -> None:
        self._kernel = kernel
        self._settings = kernel.settings
        self._store_specs = {s.name: s for s in stores}
        self._embedder_specs = {e.name: e for e in embedders}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kernos-memory")
        self._lock = threading.Lock()
        self._embedder: Embedder | None = None
        self._store: MemoryStore | None = None

    # -- Building ---------------------------------------------------------------------------

    def _parts(self) -> tuple[Embedder, MemoryStore]:
        """The embedder and store, built once (on a pool thread: imports are heavy)."""
        with self._lock:
            if self._embedder is None:
                self._embedder = self._choose(
                    self._embedder_specs, self._settings.memory_embedder, "embedder"
                ).build(self._settings)
            if self._store is None:
                spec = self._choose(self._store_specs, self._settings.memory_store, "store")
                self._store = spec.build(self._settings, self._embedder)
            return self._embedder, self._store

    @staticmethod
    def _choose(specs: Mapping[str, Any], name: str, what: str) -> Any:
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none registered"
            setting = "KERNOS_MEMORY_EMBEDDER" if what == "embedder" else "KERNOS_MEMORY_STORE"
            raise ConfigError(
                f"no memory {what} named {name!r} (available: {known}); set {setting} to one "
                "of them, or install the plugin that provides it"
            )
        return spec

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn)

    async def embedder(self) -> Embedder:
        """The selected embedder (built now if it was not yet)."""
        embedder, _ = await self._run(self._parts)
        return embedder

    # -- Raw operations (no authorization: the governed paths call these) --------------------

    async def put(
        self,
        scope: MemoryScope,
        documents: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Any] | None = None,
    ) -> list[str]:
        """Embed and store documents; returns their ids (new UUIDs where none were given)."""
        texts, checked = _check_put(documents, ids, metadatas)
        chosen = list(ids) if ids is not None else [uuid.uuid4().hex for _ in texts]
        # When it was stored, for retention's time to live (a key callers cannot set).
        stored_at = self._kernel.clock.now().timestamp()
        stamped: list[Metadata | None] = [{**(m or {}), STORED_AT: stored_at} for m in checked]

        def job() -> None:
            embedder, store = self._parts()
            vectors = embedder.embed(texts)
            store.put(scope, ids=chosen, texts=texts, embeddings=vectors, metadatas=stamped)

        await self._run(job)
        return chosen

    async def search(
        self,
        scope: MemoryScope,
        query: str,
        *,
        limit: int = 5,
        where: Mapping[str, Any] | None = None,
    ) -> list[MemoryHit]:
        """The documents nearest in meaning to ``query``, nearest first."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("search needs a non-empty query")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        normalized = normalize_where(where)

        def job() -> list[MemoryHit]:
            embedder, store = self._parts()
            [vector] = embedder.embed([query])
            return _public(store.search(scope, vector, limit=limit, where=normalized))

        return await self._run(job)

    async def forget(
        self,
        scope: MemoryScope,
        *,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> int:
        """Delete by ids or by filter (exactly one); returns how many were deleted."""
        if (not ids) == (not where):
            raise InvalidInput("forget needs either ids or a where filter (not both)")
        if ids is not None and (isinstance(ids, str) or not all(isinstance(i, str) for i in ids)):
            raise InvalidInput("ids must be a list of strings")
        normalized = normalize_where(where)

        def job() -> int:
            _, store = self._parts()
            return store.forget(scope, ids=list(ids) if ids else None, where=normalized)

        return await self._run(job)

    async def count(self, scope: MemoryScope) -> int:
        """Documents in the scope's collection."""
        return await self._run(lambda: self._parts()[1].count(scope))

    async def get(
        self,
        scope: MemoryScope,
        *,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int = MAX_LIMIT,
        offset: int = 0,
    ) -> list[MemoryHit]:
        """Documents by id and/or metadata filter, unranked (``MemoryStore.get``)."""
        if ids is not None and (isinstance(ids, str) or not all(isinstance(i, str) for i in ids)):
            raise InvalidInput("ids must be a list of strings")
        if not 1 <= limit <= MAX_GET or offset < 0:
            raise InvalidInput(f"limit must be 1-{MAX_GET} and offset not negative")
        normalized = normalize_where(where)
        chosen = list(ids) if ids is not None else None
        return await self._run(
            lambda: _public(
                self._parts()[1].get(
                    scope, ids=chosen, where=normalized, limit=limit, offset=offset
                )
            )
        )

    async def collections(self, tenant: str, *, agent: str | None = None) -> list[str]:
        """The tenant's (or agent's private) collections that hold documents, sorted."""
        return await self._run(lambda: self._parts()[1].collections(tenant, agent=agent))

    async def close(self) -> None:
        """Close the store and embedder and stop the pool (waits for running jobs)."""

        def job() -> None:
            with self._lock:
                for part in (self._store, self._embedder):
                    if part is not None:
                        part.close()
                self._store = self._embedder = None

        try:
            await self._run(job)
        finally:
            self._pool.shutdown(wait=True)

    # -- Governed, as an operator (the API) -----------------------------------------------

    async def put_as(
        self,
        principal: Principal,
        collection: str,
        documents: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Any] | None = None,
        agent: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[str]:
        """``memory.put`` as ``principal`` in its tenant (authorized and audited).

        With ``idempotency_key`` and no ids, the ids derive from the key, so a retried
        request replaces what the first one wrote.
        """
        scope = MemoryScope(tenant=principal.tenant, collection=collection, agent=agent)
        if ids is None and idempotency_key:
            ids = derived_ids(f"{principal.tenant}\x00{idempotency_key}", len(documents))
        args = put_args(scope, documents, ids)
        return await self._as_operator(
            principal,
            SyscallKind.MEMORY_PUT,
            scope,
            args,
            lambda: self.put(scope, documents, ids=ids, metadatas=metadatas),
            summary=lambda ids: f"{len(ids)} documents",
        )

    async def search_as(
        self,
        principal: Principal,
        collection: str,
        query: str,
        *,
        limit: int = 5,
        where: Mapping[str, Any] | None = None,
        agent: str | None = None,
    ) -> list[MemoryHit]:
        """``memory.search`` as ``principal`` in its tenant (authorized and audited)."""
        scope = MemoryScope(tenant=principal.tenant, collection=collection, agent=agent)
        args = search_args(scope, query, limit, where)
        return await self._as_operator(
            principal,
            SyscallKind.MEMORY_SEARCH,
            scope,
            args,
            lambda: self.search(scope, query, limit=limit, where=where),
            summary=lambda hits: f"{len(hits)} hits",
        )

    async def forget_as(
        self,
        principal: Principal,
        collection: str,
        *,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        agent: str | None = None,
    ) -> int:
        """``memory.forget`` as ``principal`` in its tenant (authorized and audited)."""
        scope = MemoryScope(tenant=principal.tenant, collection=collection, agent=agent)
        args = forget_args(scope, ids, where)
        return await self._as_operator(
            principal,
            SyscallKind.MEMORY_FORGET,
            scope,
            args,
            lambda: self.forget(scope, ids=ids, where=where),
            summary=lambda n: f"{n} forgotten",
        )

    async def _as_operator(
        self,
        principal: Principal,
        kind: SyscallKind,
        scope: MemoryScope,
        args: dict[str, Any],
        action: Callable[[], Awaitable[T]],
        *,
        summary: Callable[[T], str],
    ) -> T:
        kernel = self._kernel
        decision = await kernel.authorize(principal, f"memory:{scope.target}", _OBJECTS[kind])

        def record(event: str, **fields: Any) -> Callable[[Any], None]:
            entry = AuditRecord(
                event=event,
                tenant=principal.tenant,
                principal=principal.subject,
                kind=kind.value,
                target=scope.target,
                **fields,
            )
            return lambda session: kernel.audit_sink.append(session, entry)

        await kernel.db.write(
            record("syscall.intent", decision="allow", rule=decision.rule, args=args)
        )
        try:
            result = await action()
        except Exception as exc:
            code = exc.code if isinstance(exc, KernosError) else type(exc).__name__
            await kernel.db.write(record("syscall.failed", summary=f"{code}: {exc}"[:200]))
            raise
        await kernel.db.write(record("syscall.result", summary=summary(result)))
        return result


# -- What the journal and the audit log keep of a call ------------------------------------


def put_args(
    scope: MemoryScope, documents: Sequence[str], ids: Sequence[str] | None
) -> dict[str, Any]:
    """A put's arguments as journalled and audited: the documents themselves stay out (they
    are in the store), their number and ids are kept."""
    return {
        "collection": scope.collection,
        "agent": scope.agent,
        "documents": len(documents),
        "ids": list(ids)[:100] if ids is not None else None,
    }


def search_args(
    scope: MemoryScope, query: str, limit: int, where: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A search's arguments as journalled and audited (the audit sink redacts the query)."""
    return {
        "collection": scope.collection,
        "agent": scope.agent,
        "query": query,
        "limit": limit,
        "where": dict(where) if where else None,
    }


def forget_args(
    scope: MemoryScope, ids: Sequence[str] | None, where: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A forget's arguments as journalled and audited."""
    return {
        "collection": scope.collection,
        "agent": scope.agent,
        "ids": list(ids)[:100] if ids else None,
        "where": dict(where) if where else None,
    }


# -- Syscalls from inside a process --------------------------------------------------------


async def _syscall(
    kind: SyscallKind,
    collection: str,
    args: Callable[[MemoryScope, str], dict[str, Any]],
    execute: Callable[[MemoryService, MemoryScope, str], Any],
    *,
    private: bool,
) -> Any:
    from kernos.kernel.governed import process_context, syscall_key

    config = ensure_config()
    context = process_context(config)
    memory = context.memory
    if memory is None:
        raise KernosError("this kernel has no memory service")
    key = syscall_key(config, context.process.pid)
    process = context.process
    scope = MemoryScope(
        tenant=process.tenant, collection=collection, agent=process.agent if private else None
    )

    async def run(call: Syscall) -> SyscallResult:
        return SyscallResult(value=await execute(memory, scope, call.key))

    call = Syscall(
        key=key,
        kind=kind,
        target=scope.target,
        args=args(scope, key),
        process=process,
        executor=run,
    )
    return (await context.pipeline.run(call)).value


async def memory_put(
    collection: str,
    documents: Sequence[str],
    *,
    ids: Sequence[str] | None = None,
    metadatas: Sequence[Metadata | None] | None = None,
    private: bool = False,
) -> list[str]:
    """Store documents in a collection of this process's tenant (a ``memory.put`` syscall);
    returns their ids.

    Without ``ids`` they derive from the syscall key, so a step that runs again after a
    crash replaces what it wrote. ``private=True`` scopes the collection to this agent.
    """
    docs = list(documents)

    async def execute(memory: MemoryService, scope: MemoryScope, key: str) -> list[str]:
        chosen = list(ids) if ids is not None else derived_ids(key, len(docs))
        return await memory.put(scope, docs, ids=chosen, metadatas=metadatas)

    value = await _syscall(
        SyscallKind.MEMORY_PUT,
        collection,
        lambda scope, key: put_args(
            scope, docs, list(ids) if ids is not None else derived_ids(key, len(docs))
        ),
        execute,
        private=private,
    )
    return [str(i) for i in value]


async def memory_search(
    collection: str,
    query: str,
    *,
    limit: int = 5,
    where: Where | None = None,
    private: bool = False,
) -> list[dict[str, Any]]:
    """The documents of a collection nearest in meaning to ``query`` (a ``memory.search``
    syscall): dicts with ``id``, ``text``, ``metadata``, ``distance``, nearest first."""

    async def execute(memory: MemoryService, scope: MemoryScope, key: str) -> list[dict[str, Any]]:
        hits = await memory.search(scope, query, limit=limit, where=where)
        return [h.as_dict() for h in hits]

    value = await _syscall(
        SyscallKind.MEMORY_SEARCH,
        collection,
        lambda scope, key: search_args(scope, query, limit, where),
        execute,
        private=private,
    )
    return list(value)


async def memory_forget(
    collection: str,
    *,
    ids: Sequence[str] | None = None,
    where: Where | None = None,
    private: bool = False,
) -> int:
    """Delete documents of a collection by id or by filter (a ``memory.forget`` syscall);
    returns how many were deleted."""

    async def execute(memory: MemoryService, scope: MemoryScope, key: str) -> int:
        return await memory.forget(scope, ids=ids, where=where)

    value = await _syscall(
        SyscallKind.MEMORY_FORGET,
        collection,
        lambda scope, key: forget_args(scope, ids, where),
        execute,
        private=private,
    )
    return int(value)


__all__ = [
    "MAX_DOCUMENTS",
    "MAX_DOCUMENT_CHARS",
    "MAX_LIMIT",
    "STORED_AT",
    "Embedder",
    "EmbedderSpec",
    "MemoryHit",
    "MemoryScope",
    "MemoryService",
    "MemoryStore",
    "MemoryStoreSpec",
    "Metadata",
    "MetadataValue",
    "Where",
    "check_collection",
    "derived_ids",
    "memory_forget",
    "memory_put",
    "memory_search",
    "normalize_where",
]
