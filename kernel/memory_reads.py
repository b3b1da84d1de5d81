"""Memory syscalls that read without ranking: ``memory.get`` (documents by id or metadata
filter) and ``memory.list`` (the collections that hold documents).

They complete ``memory_put`` / ``memory_search`` / ``memory_forget`` (``kernos.kernel.memory``)
for key-value use such as the LangGraph store (``kernos.memory.store``): like those, each is
a syscall of the calling process, authorized for ``read`` on ``memory:TARGET``, journalled and
audited, and replayed from the journal when its step runs again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import ensure_config

from kernos.kernel.errors import InvalidInput, KernosError
from kernos.kernel.memory import MemoryService, _syscall
from kernos.kernel.memory_records import _AGENT, MAX_GET, MemoryScope, Where
from kernos.kernel.syscalls import Syscall, SyscallKind, SyscallResult

_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


async def memory_get(
    collection: str,
    *,
    ids: Sequence[str] | None = None,
    where: Where | None = None,
    limit: int = 100,
    offset: int = 0,
    private: bool = False,
) -> list[dict[str, Any]]:
    """Documents of a collection by id and/or metadata filter (a ``memory.get`` syscall):
    dicts with ``id``, ``text``, ``metadata`` in the store's order; missing ids are left out."""
    if not 1 <= limit <= MAX_GET or offset < 0:
        raise InvalidInput(f"limit must be 1-{MAX_GET} and offset not negative")
    chosen = None if ids is None else [str(i) for i in ids]

    async def execute(memory: MemoryService, scope: MemoryScope, key: str) -> list[dict[str, Any]]:
        hits = await memory.get(scope, ids=chosen, where=where, limit=limit, offset=offset)
        return [{"id": h.id, "text": h.text, "metadata": dict(h.metadata)} for h in hits]

    def args(scope: MemoryScope, key: str) -> dict[str, Any]:
        return {
            "collection": scope.collection,
            "agent": scope.agent,
            "ids": chosen[:100] if chosen is not None else None,
            "where": dict(where) if where else None,
            "limit": limit,
            "offset": offset,
        }

    value = await _syscall(SyscallKind.MEMORY_GET, collection, args, execute, private=private)
    return list(value)


async def memory_collections(prefix: str = "", *, private: bool = False) -> list[str]:
    """Names of this tenant's collections (this agent's own with ``private``) that hold
    documents and start with ``prefix``, sorted (a ``memory.list`` syscall, authorized for
    ``read`` on ``memory:PREFIX*``, or ``memory:@AGENT/PREFIX*``)."""
    from kernos.kernel.governed import process_context, syscall_key

    if not isinstance(prefix, str) or not set(prefix) <= _PREFIX_CHARS or len(prefix) > 512:
        raise InvalidInput(f"collection prefix {prefix!r} has characters no collection name has")
    config = ensure_config()
    context = process_context(config)
    memory = context.memory
    if memory is None:
        raise KernosError("this kernel has no memory service")
    process = context.process
    agent = process.agent if private else None
    if agent is not None and not _AGENT.match(agent):
        raise InvalidInput(f"agent scope {agent!r} is not an agent name")
    key = syscall_key(config, process.pid)

    async def run(call: Syscall) -> SyscallResult:
        names = await memory.collections(process.tenant, agent=agent)
        return SyscallResult(value=[n for n in names if n.startswith(prefix)])

    call = Syscall(
        key=key,
        kind=SyscallKind.MEMORY_LIST,
        target=(f"@{agent}/" if agent else "") + prefix + "*",
        args={"prefix": prefix, "agent": agent},
        process=process,
        executor=run,
    )
    return [str(n) for n in (await context.pipeline.run(call)).value]


__all__ = ["memory_collections", "memory_get"]
