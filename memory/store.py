"""``KernosStore``: LangGraph's ``BaseStore`` on Kernos memory, every operation a syscall.

LangGraph code that uses a ``store`` (``store.put(...)`` in a node, ``InjectedStore`` in a
tool, ``get_store()``) gets Kernos long-term memory, governed: each operation is a memory
syscall of the process whose LangGraph run is calling it (``memory.get``, ``memory.search``,
``memory.put``, ``memory.forget``, ``memory.list``), so it is authorized by the policy,
journalled, audited and replayed like every other syscall. The kernel gives the store to
every agent graph compiled without one (``KERNOS_GRAPH_STORE``, default ``kernos``); a graph
compiled with ``store=KernosStore(...)`` is governed the same way. Outside a Kernos process
every operation fails (``KernosError``): there is nobody to authorize.

Scope: by default (``private=True``) the store's collections are private to the calling
agent within its tenant (``MemoryScope(agent=...)``, authorized on
``memory:@AGENT/COLLECTION``), which an agent may use without any policy line; with
``private=False`` they are the tenant's shared collections, which need a grant.

The mapping of namespaces, keys and values onto collections and documents is in
``kernos.memory.store_codec``. Semantic search embeds with the kernel's embedder
(``KERNOS_MEMORY_EMBEDDER``): an ``index`` config's ``fields`` are honoured, its ``embed`` and
``dims`` are not used. Scores are cosine similarities (``1 - distance``). TTLs are not
supported (``supports_ttl = False``). Differences from LangGraph's ``InMemoryStore``: a query
search returns indexed items only; an item's ``created_at`` is the time of its last put.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from kernos.kernel.errors import InvalidInput, KernosError
from kernos.kernel.memory import memory_forget, memory_put, memory_search
from kernos.kernel.memory_reads import memory_collections, memory_get
from kernos.kernel.memory_records import MAX_GET, MAX_LIMIT
from kernos.memory import store_codec as codec

log = logging.getLogger(__name__)


class KernosStore(BaseStore):
    """A LangGraph store on Kernos memory; every operation is a governed memory syscall."""

    supports_ttl = False

    def __init__(
        self,
        *,
        index: IndexConfig | None = None,
        private: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``index``: LangGraph's index config (only ``fields`` is used; default ``["$"]``,
        the whole value). ``private``: the calling agent's own collections (default) or the
        tenant's shared ones. ``clock``: the time items are stamped with (the kernel's)."""
        fields = (index or {}).get("fields") or ["$"]
        if index and ("embed" in index or "dims" in index):
            log.info("KernosStore embeds with the kernel's embedder; index embed/dims unused")
        self.fields: list[str] = list(fields)
        self.private = private
        self._now = clock or (lambda: datetime.now(UTC))
        try:  # graph factories run on the kernel's loop: the sync methods submit to it
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    # -- BaseStore ---------------------------------------------------------------------

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations in order, each as one syscall (consecutive puts to one
        namespace are one ``memory.put`` and one ``memory.forget``)."""
        self._loop = asyncio.get_running_loop()
        ops = list(ops)
        results: list[Result] = [None] * len(ops)
        i = 0
        while i < len(ops):
            op = ops[i]
            if isinstance(op, PutOp):
                j = i
                while j < len(ops) and _same_put_target(ops[j], op):
                    j += 1
                await self._put(op.namespace, ops[i:j])  # type: ignore[arg-type]
                i = j
                continue
            if isinstance(op, GetOp):
                results[i] = await self._get(op)
            elif isinstance(op, SearchOp):
                results[i] = await self._search(op)
            elif isinstance(op, ListNamespacesOp):
                results[i] = await self._list(op)
            else:
                raise InvalidInput(f"unknown store operation {type(op).__name__}")
            i += 1
        return results

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """The synchronous form, for sync nodes and tools, which LangGraph runs on worker
        threads: the operations run on the kernel's loop (with the caller's context, so the
        process is found) while this thread waits. On the loop itself, use the async methods.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise KernosError(
                "KernosStore's sync methods block; on the event loop use aget/aput/asearch"
            )
        loop = self._loop
        if loop is None or loop.is_closed():
            raise KernosError(
                "KernosStore has no kernel loop yet: build it inside an agent's graph factory "
                "or use the async methods first"
            )
        # run_coroutine_threadsafe schedules from this thread with a copy of its context:
        # the LangGraph config that names the process reaches the syscalls.
        return asyncio.run_coroutine_threadsafe(self.abatch(list(ops)), loop).result()

    # -- Operations --------------------------------------------------------------------

    async def _get(self, op: GetOp) -> Item | None:
        collection = codec.collection_of(op.namespace)
        found = await memory_get(collection, ids=[op.key], limit=1, private=self.private)
        return codec.to_item(tuple(op.namespace), found[0]) if found else None

    async def _put(self, namespace: tuple[str, ...], ops: Sequence[PutOp]) -> None:
        collection = codec.collection_of(namespace)
        latest = {str(op.key): op for op in ops}  # the last put of a key wins, as in LangGraph
        now = self._now()
        docs: list[str] = []
        metas: list[dict[str, Any]] = []
        keys: list[str] = []
        gone: list[str] = []
        for key, op in latest.items():
            if op.value is None:
                gone.append(key)
                continue
            if op.index is False:
                fields: list[str] | None = None
            else:
                fields = list(op.index) if op.index else self.fields
            text, indexed = codec.document(op.value, fields)
            keys.append(key)
            docs.append(text)
            metas.append(codec.metadata(op.value, indexed=indexed, now=now))
        if keys:
            await memory_put(collection, docs, ids=keys, metadatas=metas, private=self.private)
        if gone:
            await memory_forget(collection, ids=gone, private=self.private)

    async def _search(self, op: SearchOp) -> list[SearchItem]:
        if op.limit < 1 or op.offset < 0:
            raise InvalidInput("a store search needs limit >= 1 and offset >= 0")
        where, exact = codec.where_of(op.filter)
        namespaces = await self._namespaces(op.namespace_prefix)
        single = len(namespaces) == 1 and exact and not op.query
        found: list[SearchItem] = []
        for namespace in namespaces:
            collection = codec.collection_of(namespace)
            if op.query:
                want = op.offset + op.limit if exact else MAX_LIMIT
                if want > MAX_LIMIT:
                    raise InvalidInput(f"a query search reaches at most {MAX_LIMIT} items")
                indexed = {codec.INDEXED: True}
                hits = await memory_search(
                    collection,
                    op.query,
                    limit=want,
                    where={"$and": [where, indexed]} if where else indexed,
                    private=self.private,
                )
            else:
                want = op.limit if single else (op.offset + op.limit if exact else MAX_GET)
                hits = await memory_get(
                    collection,
                    where=where,
                    limit=min(want, MAX_GET),
                    offset=op.offset if single else 0,
                    private=self.private,
                )
            for hit in hits:
                fields = codec.item_fields(hit)
                if not codec.passes(fields["value"], op.filter):
                    continue
                score = 1.0 - float(hit["distance"]) if op.query else None
                found.append(SearchItem(namespace=namespace, score=score, **fields))
        if op.query:
            found.sort(key=lambda item: -(item.score or 0.0))
        return found if single else found[op.offset : op.offset + op.limit]

    async def _namespaces(self, prefix: Sequence[str]) -> list[tuple[str, ...]]:
        """The namespaces at or below ``prefix`` that hold items (one ``memory.list``)."""
        names = await memory_collections(codec.prefix_of(prefix), private=self.private)
        found = {codec.namespace_of(name) for name in names}
        return sorted(ns for ns in found if codec.under(ns, prefix))

    async def _list(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        prefix: list[str] = []
        for condition in op.match_conditions or ():
            if condition.match_type == "prefix":
                # The labels before the first wildcard narrow the listing.
                for label in condition.path:
                    if label == "*":
                        break
                    prefix.append(label)
                break
        namespaces = await self._namespaces(prefix)
        kept = [
            ns for ns in namespaces if all(codec.matches(c, ns) for c in op.match_conditions or ())
        ]
        if op.max_depth is not None:
            kept = sorted({ns[: op.max_depth] for ns in kept})
        return kept[op.offset : op.offset + op.limit]


def _same_put_target(op: Op, first: PutOp) -> bool:
    return isinstance(op, PutOp) and tuple(op.namespace) == tuple(first.namespace)


__all__ = ["KernosStore"]
