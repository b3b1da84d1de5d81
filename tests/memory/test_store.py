"""The LangGraph store on Kernos memory, in a real kernel: real Chroma, the real MiniLM model,
the real policy, LangGraph graphs running as Kernos processes.

LangGraph ships no conformance kit for stores (only ``langgraph-checkpoint-conformance``, for
checkpointers), so these tests check the ``BaseStore`` contract the way LangGraph's own store
tests do — put/get/search/delete/list_namespaces, filters, pagination — plus what Kernos adds:
every operation is an authorized, journalled, audited syscall of the calling process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.errors import InvalidInput
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.memory_records import GraphStoreSpec
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.processes import ProcessInfo, ProcessState
from kernos.kernel.settings import Settings, load_settings
from kernos.kernel.storage.models import AuditRow, SyscallRow
from kernos.memory import store_codec as codec
from kernos.memory.store import KernosStore
from kernos.policy.service import policy_services


class State(TypedDict, total=False):
    out: Any


def one_node(action: Any, *, store: Any = None, sync: bool = False) -> Any:
    """A graph factory: one node running ``action(store)`` with the store LangGraph gives it
    (the kernel's, or ``store`` compiled in)."""

    def build(spec: AgentBuild) -> Any:
        from langgraph.config import get_store
        from langgraph.graph import END, START, StateGraph

        if sync:

            def node(state: State) -> State:
                return {"out": action(get_store())}
        else:

            async def node(state: State) -> State:  # type: ignore[misc]
                return {"out": await action(get_store())}

        graph = StateGraph(State)
        graph.add_node("act", node)
        graph.add_edge(START, "act")
        graph.add_edge("act", END)
        chosen = store(spec) if callable(store) else store
        return graph.compile(store=chosen)

    return build


def items(found: list[Any]) -> list[dict[str, Any]]:
    return [{"ns": list(i.namespace), "key": i.key, "value": i.value} for i in found]


async def everything(store: BaseStore) -> dict[str, Any]:
    """The BaseStore contract, through the async API."""
    ns = ("memories", "user-1")
    await store.aput(ns, "pizza", {"food": "pizza", "likes": True, "stars": 5})
    await store.aput(ns, "liver", {"food": "liver", "likes": False, "stars": 1})
    await store.aput(ns, "note", {"text": "The depot gate code changed to 4711."}, index=["text"])
    await store.aput(("memories", "user 2"), "tea", {"food": "tea", "likes": True, "stars": 4})
    await store.aput(("other",), "x", {"secret": "hidden"}, index=False)
    got = await store.aget(ns, "pizza")
    missing = await store.aget(ns, "nothing")
    semantic = await store.asearch(ns, query="what is the code for the gate?", limit=1)
    liked = await store.asearch(("memories",), filter={"likes": True})
    starred = await store.asearch(("memories",), filter={"stars": {"$gte": 4}}, limit=1, offset=1)
    paged = [await store.asearch(ns, limit=1, offset=i) for i in range(4)]
    unindexed = await store.asearch(("other",), query="hidden secret")
    spaces = await store.alist_namespaces()
    prefixed = await store.alist_namespaces(prefix=("memories",), max_depth=1)
    suffixed = await store.alist_namespaces(suffix=("user 2",))
    await store.adelete(ns, "liver")
    await store.abatch([])
    after = await store.aget(ns, "liver")
    return {
        "got": got.dict() if got else None,
        "missing": missing,
        "semantic": [(i.key, i.score) for i in semantic],
        "liked": items(liked),
        "starred": items(starred),
        "paged": [[i.key for i in page] for page in paged],
        "unindexed": items(unindexed),
        "spaces": [list(s) for s in spaces],
        "prefixed": [list(s) for s in prefixed],
        "suffixed": [list(s) for s in suffixed],
        "deleted": after is None,
    }


def sync_ops(store: BaseStore) -> dict[str, Any]:
    """The sync API, from a sync node (LangGraph runs it on a worker thread)."""
    store.put(("prefs",), "colour", {"colour": "green"})
    found = store.get(("prefs",), "colour")
    hits = store.search(("prefs",), query="favourite colour")
    return {"value": found.value if found else None, "hits": [h.key for h in hits]}


async def read_gate(store: BaseStore) -> Any:
    found = await store.aget(("memories", "user-1"), "note")
    hits = await store.asearch(("memories",), query="gate code")
    spaces = await store.alist_namespaces()
    return {"got": found.value if found else None, "hits": len(hits), "spaces": len(spaces)}


async def write_note(store: BaseStore) -> Any:
    await store.aput(("memories", "user-1"), "note", {"text": "Acme's vault code is 1234."})
    return "ok"


async def write_shared(store: BaseStore) -> Any:
    await store.aput(("notes",), "n1", {"text": "shared"})
    return [i.key for i in await store.asearch(("notes",))]


AGENTS = {
    "keeper": one_node(everything),
    "sync-keeper": one_node(sync_ops, sync=True),
    "reader": one_node(read_gate),
    "writer": one_node(write_note),
    "shared-writer": one_node(write_shared, store=KernosStore(private=False)),
}


class Agents:
    def __init__(self, **extra: AgentSpec) -> None:
        self.extra = extra

    @hookimpl
    def register_agents(self, register: Any) -> None:
        for name, build in AGENTS.items():
            register(AgentSpec(name=name, description=name, build=build))
        for spec in self.extra.values():
            register(spec)


async def start(settings: Settings, *plugins: tuple[object, str]) -> Kernel:
    manager = PluginManager(entry_points=False)
    for plugin, name in plugins or ((Agents(), "store-agents"),):
        manager.add(plugin, name=name)
    kernel = Kernel(settings, plugins=manager)
    await kernel.start()
    return kernel


@pytest.fixture
async def kernel(kernos_settings: Settings) -> AsyncIterator[Kernel]:
    started = await start(kernos_settings)
    try:
        yield started
    finally:
        await started.stop()


async def person(kernel: Kernel, tenant: str, name: str, role: str = "operator") -> Principal:
    await kernel.identity.ensure_tenant(tenant)
    await policy_services(kernel).engine.grant_role(name, role, tenant)
    return await kernel.identity.ensure_principal(tenant, name, kind=PrincipalKind.PERSON)


async def run(kernel: Kernel, agent: str, principal: Principal) -> ProcessInfo:
    info = await kernel.processes.spawn(agent, {}, principal=principal)
    return await kernel.processes.wait(info.pid, timeout=120)


async def journal(kernel: Kernel, pid: int) -> list[SyscallRow]:
    async with kernel.db.read() as session:
        return list(await session.scalars(select(SyscallRow).where(SyscallRow.pid == pid)))


async def audited(kernel: Kernel, pid: int, event: str) -> list[AuditRow]:
    async with kernel.db.read() as session:
        query = select(AuditRow).where(AuditRow.pid == pid, AuditRow.event == event)
        return list(await session.scalars(query.order_by(AuditRow.seq)))


async def test_the_store_contract_as_governed_syscalls(kernel: Kernel) -> None:
    otto = await person(kernel, "default", "otto")
    done = await run(kernel, "keeper", otto)
    assert done.state is ProcessState.DONE, done.error
    out = done.output["out"]
    assert out["got"]["value"] == {"food": "pizza", "likes": True, "stars": 5}
    assert out["got"]["namespace"] == ["memories", "user-1"] and out["missing"] is None
    [(key, score)] = out["semantic"]
    assert key == "note" and 0 < score <= 1
    # A filter reaches sub-namespaces of the prefix; operators; pagination.
    assert sorted(i["key"] for i in out["liked"]) == ["pizza", "tea"]
    assert [i["key"] for i in out["starred"]] == ["pizza"]  # after tea: namespaces in order
    assert sorted(k for page in out["paged"] for k in page) == ["liver", "note", "pizza"]
    assert out["paged"][3] == []
    assert out["unindexed"] == []  # index=False: found by get and filters, never by a query
    assert out["spaces"] == [["memories", "user 2"], ["memories", "user-1"], ["other"]]
    assert out["prefixed"] == [["memories"]]
    assert out["suffixed"] == [["memories", "user 2"]]
    assert out["deleted"] is True
    # Every operation was a syscall of the process, on the agent's private collections.
    rows = await journal(kernel, done.pid)
    kinds = {r.kind for r in rows}
    assert kinds == {"memory.put", "memory.get", "memory.search", "memory.list", "memory.forget"}
    assert all(r.status == "done" for r in rows)
    assert all(r.args.get("agent") == "keeper" for r in rows)
    results = await audited(kernel, done.pid, "syscall.result")
    assert len(results) == len(rows)
    assert {r.target for r in results if r.kind == "memory.put"} == {
        "@keeper/memories.user-1",
        "@keeper/memories.x--757365722032",
        "@keeper/other",
    }


async def test_sync_nodes_use_the_store_from_their_thread(kernel: Kernel) -> None:
    otto = await person(kernel, "default", "otto")
    done = await run(kernel, "sync-keeper", otto)
    assert done.state is ProcessState.DONE, done.error
    assert done.output["out"] == {"value": {"colour": "green"}, "hits": ["colour"]}
    assert [r.kind for r in await audited(kernel, done.pid, "syscall.result")] == [
        "memory.put",
        "memory.get",
        "memory.list",
        "memory.search",
    ]


async def test_tenants_and_agents_never_see_each_others_items(kernel: Kernel) -> None:
    ann = await person(kernel, "acme", "ann")
    bob = await person(kernel, "globex", "bob")
    assert (await run(kernel, "writer", ann)).state is ProcessState.DONE
    mine = await run(kernel, "reader", ann)  # the same tenant, but another agent
    theirs = await run(kernel, "reader", bob)
    nothing = {"got": None, "hits": 0, "spaces": 0}
    assert mine.output["out"] == nothing and theirs.output["out"] == nothing


async def test_a_denied_store_operation_fails_the_process_and_is_audited(kernel: Kernel) -> None:
    otto = await person(kernel, "default", "otto")
    await policy_services(kernel).engine.add("p, otto, default, memory:@writer/*, write, deny")
    done = await run(kernel, "writer", otto)
    assert done.state is ProcessState.FAILED
    assert done.error["code"] == "policy_denied"
    [denied] = await audited(kernel, done.pid, "syscall.denied")
    assert denied.kind == "memory.put" and denied.target == "@writer/memories.user-1"


async def test_shared_collections_need_a_declaration_or_a_grant(
    kernos_settings: Settings,
) -> None:
    """Least privilege: an agent the policy does not name gets its own private memory only;
    shared collections are what it declares (``AgentSpec.memory``)."""
    declared = AgentSpec(
        name="declared-writer",
        description="declares its shared collection",
        build=one_node(write_shared, store=KernosStore(private=False)),
        memory=("notes*",),
    )
    kernel = await start(kernos_settings, (Agents(declared=declared), "store-agents"))
    try:
        otto = await person(kernel, "default", "otto")
        undeclared = await run(kernel, "shared-writer", otto)
        assert undeclared.state is ProcessState.FAILED
        assert "not in the agent's manifest" in undeclared.error["message"]
        allowed = await run(kernel, "declared-writer", otto)
        assert allowed.state is ProcessState.DONE, allowed.error
        assert allowed.output["out"] == ["n1"]
        # The owner's grants still count.
        await policy_services(kernel).engine.add("p, otto, default, memory:notes*, write, deny")
        assert (await run(kernel, "declared-writer", otto)).state is ProcessState.FAILED
    finally:
        await kernel.stop()


class LangGraphInMemory:
    """A plugin offering LangGraph's own ``InMemoryStore`` as a graph store."""

    @hookimpl
    def register_graph_stores(self, register: Any) -> None:
        register(GraphStoreSpec("langgraph-memory", lambda kernel: InMemoryStore(), "in memory"))


async def test_the_graph_store_is_chosen_by_settings(kernos_settings: Settings) -> None:
    async def kind(store: BaseStore | None) -> Any:
        return type(store).__name__ if store is not None else None

    spec = AgentSpec(name="probe", description="probe", build=one_node(kind))
    plugins = ((Agents(probe=spec), "store-agents"), (LangGraphInMemory(), "lg-memory"))
    for chosen, expected in (("kernos", "KernosStore"), ("langgraph-memory", "InMemoryStore")):
        settings = load_settings(home=kernos_settings.home, graph_store=chosen)
        kernel = await start(settings, *plugins)
        try:
            done = await run(kernel, "probe", await person(kernel, "default", "otto"))
            assert done.output["out"] == expected
            assert {s.name: s.plugin for s in kernel.plugins.graph_stores()} == {
                "kernos": "kernos.memory.plugin",
                "langgraph-memory": "lg-memory",
            }
        finally:
            await kernel.stop()
    kernel = await start(load_settings(home=kernos_settings.home, graph_store="nope"), *plugins)
    try:
        done = await run(kernel, "probe", await person(kernel, "default", "otto"))
        assert done.state is ProcessState.FAILED and "no LangGraph store named 'nope'" in str(
            done.error
        )
    finally:
        await kernel.stop()


async def test_the_store_outside_a_process_refuses() -> None:
    from kernos.kernel.errors import KernosError

    with pytest.raises(KernosError, match="outside a Kernos process"):
        await KernosStore().aget(("memories",), "x")
    with pytest.raises(KernosError, match="on the event loop use aget"):
        KernosStore().get(("memories",), "x")


def test_the_sync_api_needs_the_kernel_loop() -> None:
    from kernos.kernel.errors import KernosError

    with pytest.raises(KernosError, match="no kernel loop"):
        KernosStore().get(("memories",), "x")


def test_namespaces_map_to_collection_names_and_back() -> None:
    for namespace in [
        ("memories", "user-1"),
        ("a b", "ünï", "_x", "x_"),
        ("x--1", "1"),
        ("Café", "1"),
    ]:
        name = codec.collection_of(namespace)
        assert codec.namespace_of(name) == namespace
    assert codec.collection_of(("memories", "user-1")) == "memories.user-1"
    assert codec.collection_of(("a b",)) == "x--612062"
    with pytest.raises(InvalidInput):
        codec.collection_of(("ab",))  # shorter than a collection name may be
    assert codec.namespace_of("city") == ("city",)  # a collection made outside the store


def test_filters_run_in_the_store_where_they_can() -> None:
    assert codec.where_of({"kind": "bin"}) == ({"field:kind": "bin"}, True)
    where, exact = codec.where_of({"kind": "bin", "level": {"$gte": 3}})
    assert where == {"$and": [{"field:kind": "bin"}, {"field:level": {"$gte": 3}}]} and exact
    assert codec.where_of({"tags": ["a"]}) == (None, False)
    assert codec.where_of({"kind": {"$ne": "x"}}) == (None, False)
    value = {"kind": "bin", "level": 4, "tags": ["a"], "pos": {"x": 1}}
    assert codec.passes(value, {"tags": ["a"], "pos": {"x": 1}, "level": {"$gt": 3}})
    assert not codec.passes(value, {"kind": {"$ne": "bin"}})
    assert not codec.passes(value, {"level": {"$lt": "x"}})
