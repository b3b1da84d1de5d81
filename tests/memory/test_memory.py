"""Long-term memory in a real kernel: real Chroma, the real MiniLM model, the real policy.

Runs on SQLite and PostgreSQL (the kernel database holds the audit records; Chroma holds the
memories in ``KERNOS_HOME/memory``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest
from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.errors import ConfigError, InvalidInput, PolicyDenied
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.memory import (
    EmbedderSpec,
    MemoryScope,
    MemoryStoreSpec,
    memory_put,
    memory_search,
)
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.processes import ProcessState
from kernos.kernel.settings import Settings, load_settings
from kernos.kernel.storage.models import AuditRow, SyscallRow
from kernos.kernel.tokens import LOCAL_ADMIN_PRINCIPAL as ADMIN
from kernos.memory.chroma_store import ChromaStore, collection_name
from kernos.memory.minilm import MiniLMEmbedder
from kernos.policy.service import policy_services

NOTES = [
    "Bin 17 on Elm Street overflows every Monday after the weekend market.",
    "The streetlight outside the library flickers after dark.",
    "A water main burst on Harbour Road and flooded the crossing.",
]
META: list[dict[str, Any]] = [
    {"street": "Elm", "kind": "bin", "level": 3},
    {"street": "Library", "kind": "light", "level": 1},
    {"street": "Harbour", "kind": "water", "level": 5},
]


class State(TypedDict, total=False):
    out: Any


def build_archivist(spec: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def node(state: State) -> State:
        await memory_put("journal", ["The depot gate code changed to 4711."], private=True)
        hits = await memory_search("journal", "what is the new gate code?", private=True)
        shared = await memory_search("journal", "what is the new gate code?")
        return {"out": {"private": [h["text"] for h in hits], "shared": shared}}

    graph = StateGraph(State)
    graph.add_node("act", node)
    graph.add_edge(START, "act")
    graph.add_edge("act", END)
    return graph.compile()


class Agents:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(
            AgentSpec(
                name="archivist",
                description="Remembers.",
                build=build_archivist,
                memory=("journal",),  # shared; its private collections need no declaration
            )
        )


async def start(settings: Settings, *extra: tuple[object, str]) -> Kernel:
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="memory-test-agents")
    for plugin, name in extra:
        plugins.add(plugin, name=name)
    kernel = Kernel(settings, plugins=plugins)
    await kernel.start()
    return kernel


@pytest.fixture
async def kernel(kernos_settings: Settings) -> AsyncIterator[Kernel]:
    started = await start(kernos_settings)
    try:
        yield started
    finally:
        await started.stop()


async def person(kernel: Kernel, tenant: str, name: str, role: str) -> Principal:
    await kernel.identity.ensure_tenant(tenant)
    await policy_services(kernel).engine.grant_role(name, role, tenant)
    return await kernel.identity.ensure_principal(tenant, name, kind=PrincipalKind.PERSON)


async def audit(kernel: Kernel, **where: Any) -> list[AuditRow]:
    async with kernel.db.read() as session:
        query = select(AuditRow).order_by(AuditRow.seq)
        for column, value in where.items():
            query = query.where(getattr(AuditRow, column) == value)
        return list(await session.scalars(query))


async def test_put_search_filter_and_forget(kernel: Kernel) -> None:
    memory = kernel.memory
    ids = await memory.put_as(ADMIN, "city", NOTES, ids=["elm", "lib", "harbour"], metadatas=META)
    assert ids == ["elm", "lib", "harbour"]
    [hit] = await memory.search_as(ADMIN, "city", "which rubbish container is too full?", limit=1)
    assert hit.id == "elm" and hit.metadata == META[0] and 0 <= hit.distance < 1
    ranked = await memory.search_as(ADMIN, "city", "pipe rupture, road under water", limit=3)
    assert ranked[0].id == "harbour"
    assert [h.distance for h in ranked] == sorted(h.distance for h in ranked)
    # Metadata filters: equality, several keys (all must hold), operators.
    only = await memory.search_as(ADMIN, "city", "rubbish", limit=3, where={"kind": "light"})
    assert [h.id for h in only] == ["lib"]
    both = await memory.search_as(ADMIN, "city", "x", limit=3, where={"kind": "bin", "level": 3})
    assert [h.id for h in both] == ["elm"]
    high = await memory.search_as(ADMIN, "city", "x", limit=3, where={"level": {"$gte": 3}})
    assert {h.id for h in high} == {"elm", "harbour"}
    with pytest.raises(InvalidInput):
        await memory.search_as(ADMIN, "city", "x", where={"level": {"$nonsense": 1}})
    # Forget by id, then by filter.
    assert await memory.forget_as(ADMIN, "city", ids=["lib", "unknown"]) == 1
    assert await memory.forget_as(ADMIN, "city", where={"street": "Harbour"}) == 1
    scope = MemoryScope(tenant="default", collection="city")
    assert await memory.count(scope) == 1
    assert [h.id for h in await memory.search_as(ADMIN, "city", "water", limit=5)] == ["elm"]
    # An id put again replaces its document instead of adding one.
    await memory.put_as(ADMIN, "city", ["Bin 17 was emptied."], ids=["elm"])
    assert await memory.count(scope) == 1
    # Every access was audited as the caller: intent before, result after.
    records = await audit(kernel, principal="default/admin", event="syscall.result")
    kinds = [r.kind for r in records]
    assert kinds.count("memory.put") == 2 and kinds.count("memory.forget") == 2
    assert kinds.count("memory.search") == 6 and all(r.target == "city" for r in records)
    [failed] = await audit(kernel, event="syscall.failed")
    assert failed.kind == "memory.search" and failed.summary.startswith("invalid_input")


async def test_bad_input_is_refused_before_anything_happens(kernel: Kernel) -> None:
    memory = kernel.memory
    for name in ("ab", "-lead", "trail-", "has space", "a..b", "x" * 513):
        with pytest.raises(InvalidInput, match="collection name"):
            await memory.put_as(ADMIN, name, ["text"])
    with pytest.raises(InvalidInput, match="ids"):
        await memory.put_as(ADMIN, "city", ["a", "b"], ids=["same", "same"])
    with pytest.raises(InvalidInput, match="metadata"):
        await memory.put_as(ADMIN, "city", ["a"], metadatas=[{"nested": {"no": 1}}])
    with pytest.raises(InvalidInput, match="either ids or a where"):
        await memory.forget_as(ADMIN, "city")
    with pytest.raises(InvalidInput, match="limit"):
        await memory.search_as(ADMIN, "city", "q", limit=101)
    assert await memory.search_as(ADMIN, "never-written", "anything") == []


async def test_tenants_never_see_each_others_memories(kernel: Kernel) -> None:
    ann = await person(kernel, "acme", "ann", "operator")
    bob = await person(kernel, "globex", "bob", "operator")
    await kernel.memory.put_as(ann, "notes", ["Acme's vault code is 1234."], ids=["secret"])
    await kernel.memory.put_as(bob, "notes", ["Globex likes blue."], ids=["colour"])
    seen = await kernel.memory.search_as(bob, "notes", "what is the vault code?", limit=10)
    assert [h.id for h in seen] == ["colour"]
    assert await kernel.memory.forget_as(bob, "notes", ids=["secret"]) == 0
    assert [h.id for h in await kernel.memory.search_as(ann, "notes", "code")] == ["secret"]
    # Distinct scopes map to distinct Chroma collections, however the names are spelled.
    names = {
        collection_name(MemoryScope(tenant=t, collection=c, agent=a))
        for t, c, a in [
            ("acme", "notes", None),
            ("acme", "notes", "x"),
            ("acme-notes", "abc", None),
        ]
    }
    assert len(names) == 3


async def test_a_denied_access_is_audited_and_changes_nothing(kernel: Kernel) -> None:
    vera = await person(kernel, "default", "vera", "viewer")
    await kernel.memory.put_as(ADMIN, "city", NOTES[:1], ids=["elm"])
    # A viewer reads (search) but may not write (put, forget).
    assert [h.id for h in await kernel.memory.search_as(vera, "city", "bins")] == ["elm"]
    with pytest.raises(PolicyDenied, match="may not write memory:city"):
        await kernel.memory.put_as(vera, "city", ["Vera was here."])
    with pytest.raises(PolicyDenied):
        await kernel.memory.forget_as(vera, "city", ids=["elm"])
    denied = await audit(kernel, event="operator.denied", principal="default/vera")
    assert [(r.target, r.kind, r.decision) for r in denied] == [
        ("memory:city", "write", "deny")
    ] * 2
    assert await kernel.memory.count(MemoryScope(tenant="default", collection="city")) == 1
    # A deny line for one collection wins over the operator role's grant.
    otto = await person(kernel, "default", "otto", "operator")
    await policy_services(kernel).engine.add("p, otto, default, memory:private, read, deny")
    with pytest.raises(PolicyDenied):
        await kernel.memory.search_as(otto, "private", "anything")
    assert await kernel.memory.search_as(otto, "city", "bins")


async def test_memories_survive_a_kernel_restart(kernos_settings: Settings) -> None:
    first = await start(kernos_settings)
    try:
        await first.memory.put_as(
            ADMIN, "city", NOTES, ids=["elm", "lib", "harbour"], metadatas=META
        )
    finally:
        await first.stop()
    second = await start(kernos_settings)
    try:
        [hit] = await second.memory.search_as(ADMIN, "city", "lamp blinking at night", limit=1)
        assert hit.id == "lib" and hit.metadata["street"] == "Library"
        scope = MemoryScope(tenant="default", collection="city")
        assert await second.memory.count(scope) == 3
    finally:
        await second.stop()


async def test_a_process_uses_memory_through_the_pipeline(kernel: Kernel) -> None:
    otto = await person(kernel, "default", "otto", "operator")
    info = await kernel.processes.spawn("archivist", {}, principal=otto)
    done = await kernel.processes.wait(info.pid, timeout=60)
    assert done.state is ProcessState.DONE, done.error
    # Scoped to the agent, the memory is invisible in the tenant's shared collection.
    assert done.output["out"] == {
        "private": ["The depot gate code changed to 4711."],
        "shared": [],
    }
    async with kernel.db.read() as session:
        journal = list(await session.scalars(select(SyscallRow).where(SyscallRow.pid == info.pid)))
    assert sorted(r.kind for r in journal) == ["memory.put", "memory.search", "memory.search"]
    assert all(r.status == "done" for r in journal)
    [put] = [r for r in journal if r.kind == "memory.put"]
    assert put.args["agent"] == "archivist" and put.args["documents"] == 1
    assert put.result == put.args["ids"]  # derived from the syscall key: a re-run replaces
    records = await audit(kernel, pid=info.pid)
    assert {r.event for r in records} >= {"syscall.intent", "syscall.result"}


class SmallBatches:
    """A second, real store and embedder registered through the hooks: an in-memory Chroma
    and MiniLM with batches of 2."""

    def __init__(self) -> None:
        self.built: list[str] = []

    @hookimpl
    def register_embedders(self, register: Any) -> None:
        def build(settings: Settings) -> MiniLMEmbedder:
            self.built.append("embedder")
            embedder = MiniLMEmbedder.from_settings(settings)
            embedder.batch_size = 2
            return embedder

        register(EmbedderSpec("minilm-small", build, "MiniLM in batches of 2"))

    @hookimpl
    def register_memory_stores(self, register: Any) -> None:
        def build(settings: Settings, embedder: Any) -> ChromaStore:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            self.built.append(f"store:{embedder.name}")
            client = chromadb.EphemeralClient(ChromaSettings(anonymized_telemetry=False))
            return ChromaStore(client, embedder=embedder.name)

        register(MemoryStoreSpec("ephemeral", build, "Chroma in memory"))


async def test_plugins_add_stores_and_embedders_chosen_by_settings(
    kernos_settings: Settings,
) -> None:
    plugin = SmallBatches()
    settings = load_settings(
        home=kernos_settings.home, memory_store="ephemeral", memory_embedder="minilm-small"
    )
    kernel = await start(settings, (plugin, "small-batches"))
    try:
        assert plugin.built == []  # nothing is built until memory is first used
        await kernel.memory.put_as(ADMIN, "city", NOTES, ids=["elm", "lib", "harbour"])
        [hit] = await kernel.memory.search_as(ADMIN, "city", "flooded road", limit=1)
        assert hit.id == "harbour"
        assert plugin.built == ["embedder", "store:all-MiniLM-L6-v2-int8"]
        assert not (settings.home / "memory").exists()  # the embedded store was not used
        assert {s.plugin for s in kernel.plugins.memory_stores()} == {
            "kernos.memory.plugin",
            "small-batches",
        }
    finally:
        await kernel.stop()
    unknown = await start(load_settings(home=kernos_settings.home, memory_store="nope"))
    try:
        with pytest.raises(ConfigError, match="no memory store named 'nope'.*chroma"):
            await unknown.memory.search_as(ADMIN, "city", "x")
    finally:
        await unknown.stop()
