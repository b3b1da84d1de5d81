"""The Kernos checkpointer on SQLite and PostgreSQL: LangGraph's conformance kit, real graphs
resumed by a fresh saver (a restart), and the on_checkpoint hook's shared transaction."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict
from uuid import uuid4

import pytest
from langgraph.checkpoint.base import Checkpoint, CheckpointMetadata
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import EXTENDED_CAPABILITIES
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kernos.kernel.checkpointer import KernosCheckpointSaver
from kernos.kernel.clock import SystemClock
from kernos.kernel.settings import Settings
from kernos.kernel.storage import migrate
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import (
    CheckpointBlobRow,
    CheckpointRow,
    CheckpointWriteRow,
    TenantRow,
)

NOW = SystemClock().now()
CHECKPOINT_TABLES = (CheckpointRow, CheckpointBlobRow, CheckpointWriteRow)


@pytest.fixture
async def migrated(kernos_settings: Settings) -> Settings:
    kernos_settings.home.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate.upgrade, kernos_settings.db_url)
    return kernos_settings


@pytest.fixture
async def database(migrated: Settings):
    db = Database(migrated)
    await db.start()
    yield db
    await db.stop()


def _clear(session: Session) -> None:
    for model in CHECKPOINT_TABLES:
        session.execute(delete(model))


# -- conformance ---------------------------------------------------------------------------


async def test_the_langgraph_conformance_suite_passes(database: Database) -> None:
    @checkpointer_test(name=f"KernosCheckpointSaver[{database.dialect}]")
    async def factory():
        # A fresh, empty store for every capability suite.
        await database.write(_clear)
        yield KernosCheckpointSaver(database)

    failures: list[str] = []

    def on_result(capability: str, test: str, passed: bool, error: str | None) -> None:
        if not passed:
            failures.append(f"{capability}.{test}:\n{error}")

    report = await validate(factory, progress=ProgressCallbacks(on_test_result=on_result))
    summary = "\n".join(failures) or str(report.to_dict())
    assert report.passed_all_base(), summary
    for capability in EXTENDED_CAPABILITIES:
        result = report.results[capability.value]
        assert result.detected, f"{capability.value} is implemented but was not detected"
        assert result.passed, summary
    assert report.conformance_level() == "FULL", summary


# -- real graphs, resumed after a restart --------------------------------------------------


class Flow(TypedDict):
    count: int
    log: Annotated[list[str], operator.add]


def _step(name: str):
    async def node(state: Flow) -> dict[str, Any]:
        return {"count": state["count"] + 1, "log": [name]}

    return node


def _three_steps(saver: KernosCheckpointSaver, *, ask_in: str | None = None):
    builder = StateGraph(Flow)
    for name in ("a", "b", "c"):
        if name == ask_in:

            async def ask(state: Flow, name: str = name) -> dict[str, Any]:
                answer = interrupt({"question": "go on?", "at": state["count"]})
                return {"count": state["count"] + 1, "log": [f"{name}:{answer}"]}

            builder.add_node(name, ask)
        else:
            builder.add_node(name, _step(name))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder.compile(checkpointer=saver)


async def _restart(settings: Settings, db: Database) -> Database:
    await db.stop()
    fresh = Database(settings)
    await fresh.start()
    return fresh


async def test_a_graph_continues_its_thread_after_a_restart(migrated: Settings) -> None:
    config = {"configurable": {"thread_id": f"t-{uuid4()}"}}
    db = Database(migrated)
    await db.start()
    try:
        graph = _three_steps(KernosCheckpointSaver(db))
        first = await graph.ainvoke({"count": 0, "log": ["start"]}, config, durability="sync")
        assert first == {"count": 3, "log": ["start", "a", "b", "c"]}

        db = await _restart(migrated, db)
        graph = _three_steps(KernosCheckpointSaver(db))
        saved = await graph.aget_state(config)
        assert saved.values == first
        assert saved.next == ()
        updates = [
            chunk
            async for chunk in graph.astream(
                {"count": 10, "log": ["again"]}, config, durability="sync"
            )
        ]
        assert [next(iter(u)) for u in updates] == ["a", "b", "c"]
        state = await graph.aget_state(config)
        # The reducer kept the saved log: the thread continued rather than started over.
        assert state.values == {
            "count": 13,
            "log": ["start", "a", "b", "c", "again", "a", "b", "c"],
        }
        history = [s async for s in graph.aget_state_history(config)]
        assert len(history) == 10  # per run: the input, then one per superstep (START, a, b, c)
    finally:
        await db.stop()


async def test_an_interrupt_is_resumed_by_a_fresh_saver(migrated: Settings) -> None:
    config = {"configurable": {"thread_id": f"t-{uuid4()}"}}
    db = Database(migrated)
    await db.start()
    try:
        graph = _three_steps(KernosCheckpointSaver(db), ask_in="b")
        paused = await graph.ainvoke({"count": 0, "log": []}, config, durability="sync")
        (question,) = paused["__interrupt__"]
        assert question.value == {"question": "go on?", "at": 1}

        db = await _restart(migrated, db)
        graph = _three_steps(KernosCheckpointSaver(db), ask_in="b")
        waiting = await graph.aget_state(config)
        assert waiting.next == ("b",)
        assert waiting.tasks[0].interrupts[0].value == question.value
        done = await graph.ainvoke(Command(resume="yes"), config, durability="sync")
        # "a" ran once, before the restart; "b" got the answer given after it.
        assert done == {"count": 3, "log": ["a", "b:yes", "c"]}
    finally:
        await db.stop()


async def test_the_synchronous_api_is_refused_clearly(database: Database) -> None:
    saver = KernosCheckpointSaver(database)
    config = {"configurable": {"thread_id": "t"}}
    with pytest.raises(NotImplementedError, match="async-only.*ainvoke/astream"):
        saver.get_tuple(config)
    with pytest.raises(NotImplementedError, match="async-only"):
        saver.list(config)
    with pytest.raises(NotImplementedError, match="async-only"):
        _three_steps(saver).invoke({"count": 0, "log": []}, config)


# -- what a step writes --------------------------------------------------------------------


def _checkpoint(values: dict[str, Any], versions: dict[str, str]) -> Checkpoint:
    from langgraph.checkpoint.conformance.test_utils import generate_checkpoint

    return generate_checkpoint(channel_values=values, channel_versions=versions)


async def _count(db: Database, model: type[Any]) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_step_writes_only_the_channels_it_changed(database: Database) -> None:
    saver = KernosCheckpointSaver(database)
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    big = {"messages": ["m"] * 50, "notes": {"k": "v" * 500}}
    v1 = {"messages": saver.get_next_version(None, None), "notes": "1", "n": "1"}
    first = await saver.aput(config, _checkpoint({**big, "n": 1}, v1), {"step": 0}, v1)
    assert await _count(database, CheckpointBlobRow) == 2  # "n" is inlined

    v2 = {**v1, "messages": saver.get_next_version(v1["messages"], None), "n": "2"}
    changed = {"messages": v2["messages"], "n": "2"}
    values = {**big, "messages": [*big["messages"], "m2"], "n": 2}
    second = await saver.aput(first, _checkpoint(values, v2), {"step": 1}, changed)
    assert await _count(database, CheckpointBlobRow) == 3  # one new message list only

    latest = await saver.aget_tuple(second)
    assert latest is not None
    assert latest.checkpoint["channel_values"] == values
    assert latest.parent_config == first
    older = await saver.aget_tuple(first)
    assert older is not None
    assert older.checkpoint["channel_values"] == {**big, "n": 1}
    assert v2["messages"] > v1["messages"]  # versions sort as strings


async def test_listing_pages_through_long_threads(database: Database) -> None:
    saver = KernosCheckpointSaver(database)
    config = {"configurable": {"thread_id": "long", "checkpoint_ns": ""}}
    ids = []
    for step in range(120):
        config = await saver.aput(config, _checkpoint({}, {}), {"step": step}, {})
        ids.append(config["configurable"]["checkpoint_id"])
    base = {"configurable": {"thread_id": "long"}}
    listed = [t.checkpoint["id"] async for t in saver.alist(base)]
    assert listed == ids[::-1]
    assert [t.metadata["step"] async for t in saver.alist(base, limit=70)] == list(
        range(119, 49, -1)
    )
    assert [t.checkpoint["id"] async for t in saver.alist(None, limit=3)] == ids[:-4:-1]


# -- on_checkpoint: one transaction with the checkpoint -------------------------------------


async def test_on_checkpoint_commits_with_the_checkpoint(database: Database) -> None:
    seen: list[tuple[str, bool]] = []

    def record(
        session: Session, config: Any, checkpoint: Checkpoint, metadata: CheckpointMetadata
    ) -> None:
        # The checkpoint row is already in this (uncommitted) transaction.
        row = session.get(CheckpointRow, ("proc-1", "", checkpoint["id"]))
        seen.append((config["configurable"]["pid"], row is not None))
        name = f"step-{metadata['step']}"
        session.add(TenantRow(name=name, display_name="", created_at=NOW, disabled=False))

    saver = KernosCheckpointSaver(database, on_checkpoint=record)
    config = {"configurable": {"thread_id": "proc-1", "checkpoint_ns": "", "pid": "7"}}
    stored = await saver.aput(config, _checkpoint({}, {}), {"step": 0}, {})
    assert seen == [("7", True)]
    assert await saver.aget_tuple(stored) is not None
    async with database.read() as session:
        assert await session.scalar(select(TenantRow.name)) == "step-0"


async def test_a_failing_on_checkpoint_leaves_no_checkpoint(database: Database) -> None:
    def fail(session: Session, *_: Any) -> None:
        session.add(TenantRow(name="half", display_name="", created_at=NOW, disabled=False))
        session.flush()
        raise RuntimeError("process row update failed")

    saver = KernosCheckpointSaver(database, on_checkpoint=fail)
    config = {"configurable": {"thread_id": "proc-2", "checkpoint_ns": ""}}
    values = {"big": ["x"] * 100}
    versions = {"big": "1"}
    with pytest.raises(RuntimeError, match="process row update failed"):
        await saver.aput(config, _checkpoint(values, versions), {"step": 0}, versions)
    assert await saver.aget_tuple(config) is None
    for model in (*CHECKPOINT_TABLES, TenantRow):
        assert await _count(database, model) == 0, model.__tablename__
