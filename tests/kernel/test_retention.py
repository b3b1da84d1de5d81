"""Retention on SQLite and PostgreSQL: checkpoints (keep the last N, all past max_age), the
journal, idempotency records, dead letters, memory TTL, the audit archive; tenant isolation,
tombstones against late writes, restarts, interrupted passes, and an audit record for each."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypedDict

import pytest
from sqlalchemy import func, select

from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.checkpointer import KernosCheckpointSaver
from kernos.kernel.clock import SimulatedClock
from kernos.kernel.errors import Conflict
from kernos.kernel.events import Event
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.memory import MemoryScope
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.processes import ProcessState
from kernos.kernel.retention import Purger, checkpoint_storage
from kernos.kernel.retention_jobs import PURGED_EVENT, Scope, purge_processes_job
from kernos.kernel.retention_policy import RetentionPolicy
from kernos.kernel.settings import Settings, load_settings
from kernos.kernel.storage.models import (
    AuditRow,
    CheckpointBlobRow,
    CheckpointRow,
    CheckpointWriteRow,
    DeadLetterRow,
    EventDeliveryRow,
    EventRow,
    ProcessRow,
    SyscallRow,
)

DAY = 86400.0
ADMIN = Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)
WAIT = 60.0


class CountState(TypedDict, total=False):
    n: int
    goal: int
    trail: list[str]


def build_counter(build: AgentBuild) -> Any:
    """One step per count up to ``goal``, each growing a list (a blob per version)."""
    from langgraph.graph import END, START, StateGraph

    async def step(state: CountState) -> CountState:
        n = state.get("n", 0) + 1
        return {"n": n, "trail": [*state.get("trail", []), f"step {n} " + "x" * 64]}

    graph = StateGraph(CountState)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges(
        "step", lambda s: "step" if s["n"] < s.get("goal", 3) else END, ["step", END]
    )
    return graph.compile()


GATE: dict[str, asyncio.Event] = {}


def build_waiter(build: AgentBuild) -> Any:
    """Steps once, then blocks on a gate: a live process while the test purges."""
    from langgraph.graph import END, START, StateGraph

    async def first(state: CountState) -> CountState:
        return {"n": 1, "trail": ["first"]}

    async def second(state: CountState) -> CountState:
        GATE["entered"].set()
        await GATE["open"].wait()
        return {"n": 2}

    graph = StateGraph(CountState)
    graph.add_node("first", first)
    graph.add_node("second", second)
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    graph.add_edge("second", END)
    return graph.compile()


class Agents:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(AgentSpec(name="counter", description="Counts.", build=build_counter))
        register(AgentSpec(name="waiter", description="Waits.", build=build_waiter))


def policy(**rules: Any) -> RetentionPolicy:
    return RetentionPolicy.model_validate({"interval": 0, **rules})


@pytest.fixture
async def make_kernel(kernos_settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    started: list[Kernel] = []

    async def make(settings: Settings | None = None, **overrides: Any) -> Kernel:
        clock = overrides.pop("clock", None)
        chosen = settings or kernos_settings
        if overrides:
            chosen = chosen.model_copy(update=overrides)
        plugins = PluginManager(entry_points=False)
        plugins.add(Agents(), name="test-agents")
        kernel = Kernel(chosen, plugins=plugins, clock=clock)
        await kernel.start()
        started.append(kernel)
        return kernel

    GATE["open"], GATE["entered"] = asyncio.Event(), asyncio.Event()
    yield make
    GATE["open"].set()
    for kernel in started:
        if kernel.running:
            await kernel.stop()


async def run(kernel: Kernel, goal: int, tenant: str = "default") -> int:
    by = ADMIN
    if tenant != "default":
        await kernel.identity.ensure_tenant(tenant)
        await kernel.identity.ensure_principal(tenant, "admin", kind=PrincipalKind.PERSON)
        from kernos.policy.service import policy_services

        await policy_services(kernel).engine.grant_role("admin", "admin", tenant)
        by = Principal(tenant=tenant, name="admin", kind=PrincipalKind.PERSON)
    info = await kernel.processes.spawn("counter", {"goal": goal}, principal=by)
    done = await kernel.processes.wait(info.pid, timeout=WAIT)
    assert done.state is ProcessState.DONE, done.error
    return info.pid


async def rows(kernel: Kernel, model: Any, **where: Any) -> int:
    query = select(func.count()).select_from(model)
    for name, value in where.items():
        query = query.where(getattr(model, name) == value)
    async with kernel.db.read() as session:
        return int(await session.scalar(query) or 0)


async def thread_of(kernel: Kernel, pid: int) -> str:
    return (await kernel.processes.get(pid)).thread_id


async def purge_records(kernel: Kernel) -> list[AuditRow]:
    async with kernel.db.read() as session:
        found = await session.scalars(
            select(AuditRow).where(AuditRow.event == PURGED_EVENT).order_by(AuditRow.seq)
        )
        return list(found)


# -- Checkpoints ---------------------------------------------------------------------------


async def test_keep_last_prunes_finished_processes_and_leaves_live_ones_alone(
    make_kernel,
) -> None:
    kernel = await make_kernel()
    pid = await run(kernel, 12)
    thread = await thread_of(kernel, pid)
    live = await kernel.processes.spawn("waiter", {}, principal=ADMIN)
    await asyncio.wait_for(GATE["entered"].wait(), WAIT)
    live_thread = live.thread_id
    before = await checkpoint_storage(kernel, [thread])
    live_before = await rows(kernel, CheckpointRow, thread_id=live_thread)
    assert before["checkpoints_rows"] >= 12 and live_before >= 1

    purger = Purger(kernel, policy=policy(checkpoints={"keep_last": 1}, batch_size=7))
    report = await purger.run_once()

    after = await checkpoint_storage(kernel, [thread])
    assert await rows(kernel, CheckpointRow, thread_id=thread) == 1
    assert after["checkpoint_blobs_rows"] < before["checkpoint_blobs_rows"]
    assert after["bytes"] < before["bytes"]
    assert report.count("checkpoints", "checkpoints") == before["checkpoints_rows"] - 1
    # The final state is still there; the live process kept every checkpoint.
    saver = KernosCheckpointSaver(kernel.db)
    final = await saver.aget_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
    assert final is not None and final.checkpoint["channel_values"]["n"] == 12
    assert len(final.checkpoint["channel_values"]["trail"]) == 12
    assert await rows(kernel, CheckpointRow, thread_id=live_thread) == live_before
    # Small batches: several jobs, each with its own record; the counts add up.
    records = await purge_records(kernel)
    assert len(records) > 1 and {r.kind for r in records} == {"checkpoints"}
    assert sum(r.args["checkpoints"] for r in records) == before["checkpoints_rows"] - 1
    assert all(r.args["pids"] == [pid] and r.principal == "kernel" for r in records)
    # A second pass finds nothing and audits nothing.
    again = await purger.run_once()
    assert again.count("checkpoints", "checkpoints") == 0
    assert len(await purge_records(kernel)) == len(records)
    GATE["open"].set()
    assert (await kernel.processes.wait(live.pid, timeout=WAIT)).state is ProcessState.DONE


async def test_max_age_deletes_every_checkpoint_and_refuses_late_writes(make_kernel) -> None:
    kernel = await make_kernel()
    old = await run(kernel, 5)
    thread = await thread_of(kernel, old)
    now = kernel.clock.now()
    purger = Purger(kernel, policy=policy(checkpoints={"max_age": "30d"}))

    early = await purger.run_once(now + timedelta(days=29))
    assert early.count("checkpoints", "checkpoints") == 0
    assert await rows(kernel, CheckpointRow, thread_id=thread) > 0

    dry = await purger.run_once(now + timedelta(days=31), dry_run=True)
    assert (
        dry.count("checkpoints", "checkpoints") > 0 and dry.count("checkpoints", "processes") == 1
    )
    assert await rows(kernel, CheckpointRow, thread_id=thread) > 0 and not await purge_records(
        kernel
    )

    report = await purger.run_once(now + timedelta(days=31))
    assert report.count("checkpoints", "processes") == 1
    for model in (CheckpointRow, CheckpointBlobRow, CheckpointWriteRow):
        assert await rows(kernel, model, thread_id=thread) == 0
    [record] = await purge_records(kernel)
    assert record.tenant == "default" and record.args["pids"] == [old]
    assert record.args["checkpoints"] == report.count("checkpoints", "checkpoints")

    # A late checkpoint or journal write for the purged process is refused, not stored.
    saver = KernosCheckpointSaver(kernel.db)
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    checkpoint = {
        "v": 1,
        "id": "1f0-late",
        "ts": now.isoformat(),
        "channel_values": {},
        "channel_versions": {},
        "versions_seen": {},
        "updated_channels": None,
    }
    with pytest.raises(Conflict, match="purged"):
        await saver.aput(config, checkpoint, {}, {})  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="purged"):
        await saver.aput_writes(
            {**config, "configurable": {**config["configurable"], "checkpoint_id": "x"}},
            [("a", 1)],
            "task",
        )  # type: ignore[index]
    assert await rows(kernel, CheckpointRow, thread_id=thread) == 0
    assert await rows(kernel, CheckpointWriteRow, thread_id=thread) == 0


async def test_a_late_syscall_of_a_purged_process_is_refused(make_kernel) -> None:
    from kernos.kernel.stages import JournalStage, StageServices
    from kernos.kernel.syscalls import Syscall, SyscallKind

    kernel = await make_kernel()
    pid = await run(kernel, 2)
    purger = Purger(kernel, policy=policy(journal={"max_age": 1}))
    await purger.run_once(kernel.clock.now() + timedelta(seconds=5))
    async with kernel.db.read() as session:
        assert await session.scalar(select(ProcessRow.purged_at).where(ProcessRow.pid == pid))

    # The journal stage's own intent job (the one every syscall commits first) refuses it.
    stage = JournalStage(
        StageServices(
            db=kernel.db,
            clock=kernel.clock,
            telemetry=kernel.telemetry,
            audit=kernel.audit_sink,
            usage=kernel.usage,
            authorizer=kernel.authorizer,
            journal=kernel.journal,
        )
    )
    process = await kernel.processes._process_ref(await kernel.processes.get(pid))
    call = Syscall(
        key=f"{pid}:late",
        kind=SyscallKind.TOOL_CALL,
        target="add",
        args={},
        process=process,
        executor=None,
    )  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="journal was purged"):
        await kernel.db.write(stage._intent_job(call))
    assert await rows(kernel, SyscallRow, pid=pid) == 0


async def test_tenants_are_purged_by_their_own_rules(make_kernel) -> None:
    kernel = await make_kernel()
    mine = await run(kernel, 4)
    theirs = await run(kernel, 4, tenant="acme")
    kept = await run(kernel, 4, tenant="keeper")
    rules = policy(
        checkpoints={"max_age": "1d"},
        tenants={"keeper": {"checkpoints": {"max_age": "90d"}}},
    )
    purger = Purger(kernel, policy=rules)
    later = kernel.clock.now() + timedelta(days=2)

    only_acme = await purger.run_once(later, tenants=["acme"])
    assert set(only_acme.tenants) == {"acme"}
    assert await rows(kernel, CheckpointRow, thread_id=await thread_of(kernel, theirs)) == 0
    assert await rows(kernel, CheckpointRow, thread_id=await thread_of(kernel, mine)) > 0

    await purger.run_once(later)
    assert await rows(kernel, CheckpointRow, thread_id=await thread_of(kernel, mine)) == 0
    assert await rows(kernel, CheckpointRow, thread_id=await thread_of(kernel, kept)) > 0
    records = await purge_records(kernel)
    assert sorted(r.tenant for r in records) == ["acme", "default"]
    assert {r.tenant: r.args["pids"] for r in records} == {"acme": [theirs], "default": [mine]}


# -- Journal, dead letters, idempotency -------------------------------------------------------


async def test_journal_dead_letters_and_idempotency_records_are_pruned(make_kernel) -> None:
    kernel = await make_kernel(event_max_attempts=1)
    bus = kernel.events
    failed: list[str] = []

    async def broken(event: Event) -> None:
        failed.append(event.id)
        raise RuntimeError("boom")

    async def fine(event: Event) -> None:
        return None

    bus.subscribe("bins.full", broken, name="broken")
    bus.subscribe("bins.ok", fine, name="fine")
    await bus.publish(
        Event(topic="bins.full", tenant="default", source="default/admin", data={}, id="e-dead")
    )
    await bus.publish(
        Event(topic="bins.ok", tenant="default", source="default/admin", data={}, id="e-ok")
    )
    await asyncio.wait_for(bus.drain(), WAIT)
    assert await rows(kernel, DeadLetterRow) == 1
    pid = await run(kernel, 2)
    spawned = await kernel.processes.spawn(
        "counter", {"goal": 1}, principal=ADMIN, idempotency_key="api:retry-me"
    )
    await kernel.processes.wait(spawned.pid, timeout=WAIT)
    async with kernel.db.read() as session:
        journal_before = await session.scalar(select(func.count()).select_from(SyscallRow))
    purger = Purger(
        kernel,
        policy=policy(
            journal={"max_age": "1h"}, dead_letters={"max_age": "1h"}, idempotency={"max_age": "1h"}
        ),
    )
    async with kernel.db.read() as session:
        newest_seq = await session.scalar(select(func.max(EventRow.seq)))
    report = await purger.run_once(kernel.clock.now() + timedelta(hours=2))
    assert await rows(kernel, DeadLetterRow) == 0
    # The newest event stays (its seq is the high-water mark new events count from).
    assert await rows(kernel, EventRow) == 1 and await rows(kernel, EventDeliveryRow) == 1
    assert report.count("dead_letters", "dead_letters") == 1
    assert report.count("idempotency", "events") == 1
    fresh = await bus.publish(
        Event(topic="bins.ok", tenant="default", source="default/admin", data={}, id="e-new")
    )
    listed = await bus.published(tenant="default", after=newest_seq)
    assert [e.id for _, e in listed] == [fresh.id]  # a reader following by seq sees it
    assert report.count("idempotency", "spawn_keys") >= 1
    assert await rows(kernel, SyscallRow, pid=pid) == 0
    assert report.count("journal", "syscalls") == (journal_before or 0)
    # The idempotency window has passed: the same key now starts a new run.
    again = await kernel.processes.spawn(
        "counter", {"goal": 1}, principal=ADMIN, idempotency_key="api:retry-me"
    )
    assert again.pid != spawned.pid
    kinds = {r.kind for r in await purge_records(kernel)}
    assert {"dead_letters", "idempotency", "journal"} <= kinds


async def test_an_undelivered_event_keeps_its_idempotency_record(make_kernel) -> None:
    kernel = await make_kernel(event_max_attempts=1)
    await kernel.events.publish(
        Event(topic="bins.full", tenant="default", source="default/admin", data={}, id="e-1")
    )

    def pend(session: Any) -> None:
        seq = session.scalar(select(EventRow.seq))
        session.add(
            EventDeliveryRow(
                event_seq=seq,
                subscriber="later",
                status="pending",
                attempts=0,
                next_attempt_at=kernel.clock.now(),
                created_at=kernel.clock.now(),
                updated_at=kernel.clock.now(),
            )
        )

    await kernel.db.write(pend)
    purger = Purger(kernel, policy=policy(idempotency={"max_age": 1}))
    report = await purger.run_once(kernel.clock.now() + timedelta(hours=1))
    assert report.count("idempotency", "events") == 0 and await rows(kernel, EventRow) == 1


# -- Restart and interruption ------------------------------------------------------------------


async def test_policy_and_purges_survive_a_restart_and_an_interrupted_pass_resumes(
    make_kernel, kernos_settings: Settings
) -> None:
    home = kernos_settings.home
    home.mkdir(parents=True, exist_ok=True)
    (home / "kernos.toml").write_text(
        '[retention]\ninterval = 0\nbatch_size = 4\n[retention.checkpoints]\nmax_age = "1d"\n'
    )
    settings = load_settings(home=home, database_url=kernos_settings.database_url)
    assert settings.retention.checkpoints.max_age == DAY and settings.retention.batch_size == 4
    kernel = await make_kernel(settings)
    pid = await run(kernel, 6)
    thread = await thread_of(kernel, pid)
    total = await rows(kernel, CheckpointRow, thread_id=thread)
    later = kernel.clock.now() + timedelta(days=2)
    async with kernel.db.read() as session:
        tid = await session.scalar(select(ProcessRow.tenant_id).where(ProcessRow.pid == pid))
    scope = Scope(
        tenant="default",
        tenant_id=int(tid or 0),
        cutoff=later - timedelta(days=1),
        now=later,
        rule="max_age=86400s",
        principal="kernel",
        limit=4,
    )
    # One job of the pass commits (tombstone, 4 rows, its audit record), then the kernel stops.
    first = await kernel.db.write(purge_processes_job("checkpoints", scope, kernel.audit_sink))
    assert first["processes"] == 1 and sum(first.values()) == 5
    await kernel.stop()

    kernel = await make_kernel(settings)
    assert kernel.retention.policy.checkpoints.max_age == DAY
    saver = KernosCheckpointSaver(kernel.db)
    with pytest.raises(Conflict):  # the tombstone came back with the restart
        await saver.aput(
            {"configurable": {"thread_id": thread, "checkpoint_ns": ""}},
            {
                "v": 1,
                "id": "late",
                "ts": "",
                "channel_values": {},
                "channel_versions": {},
                "versions_seen": {},
            },
            {},
            {},
        )  # type: ignore[arg-type]
    report = await kernel.retention.run_once(later)
    for model in (CheckpointRow, CheckpointBlobRow, CheckpointWriteRow):
        assert await rows(kernel, model, thread_id=thread) == 0
    records = await purge_records(kernel)
    assert sum(r.args["checkpoints"] for r in records) == total
    assert report.count("checkpoints", "processes") == 0  # marked before the stop
    await kernel.stop()
    kernel = await make_kernel(settings)
    assert await rows(kernel, CheckpointRow, thread_id=thread) == 0
    assert (await kernel.retention.run_once(later)).tenants.get("default", {}) == {
        "checkpoints": {
            "processes": 0,
            "checkpoint_writes": 0,
            "checkpoint_blobs": 0,
            "checkpoints": 0,
        }
    }


async def test_the_purge_loop_runs_on_the_kernel_clock(make_kernel) -> None:
    clock = SimulatedClock()
    kernel = await make_kernel(
        retention=policy(interval=3600, checkpoints={"keep_last": 1}), clock=clock
    )
    pid = await run(kernel, 4)
    thread = await thread_of(kernel, pid)
    assert await rows(kernel, CheckpointRow, thread_id=thread) > 1
    await asyncio.wait_for(clock.wait_for_sleepers(1), WAIT)
    await clock.advance(3600)
    for _ in range(200):
        if kernel.retention.last_report is not None:
            break
        await asyncio.sleep(0.05)
    assert await rows(kernel, CheckpointRow, thread_id=thread) == 1
    await kernel.stop()


# -- Memory and the audit archive ------------------------------------------------------------


async def test_memory_ttl_deletes_expired_documents_per_collection(make_kernel) -> None:
    clock = SimulatedClock()
    kernel = await make_kernel(clock=clock)
    memory = kernel.memory
    scratch = MemoryScope(tenant="default", collection="scratch-1")
    notes = MemoryScope(tenant="default", collection="notes")
    await memory.put(scratch, ["old bin reading", "older bin reading"], ids=["a", "b"])
    await memory.put(notes, ["a note to keep"], ids=["n"])
    await clock.advance(2 * 3600)
    await memory.put(scratch, ["fresh bin reading"], ids=["c"], metadatas=[{"kind": "reading"}])
    purger = Purger(kernel, policy=policy(memory={"ttl": {"scratch-*": "1h"}}))

    dry = await purger.run_once(dry_run=True)
    assert dry.count("memory", "documents") == 2 and await memory.count(scratch) == 3
    report = await purger.run_once()
    assert report.count("memory", "documents") == 2
    left = await memory.get(scratch, ids=["a", "b", "c"])
    assert [h.id for h in left] == ["c"] and left[0].metadata == {"kind": "reading"}
    assert await memory.count(notes) == 1
    [record] = await purge_records(kernel)
    assert record.kind == "memory" and record.args["collections"] == {"scratch-1": 2}


async def test_audit_ranges_are_archived_with_their_signed_checkpoint(
    make_kernel, kernos_settings: Settings, tmp_path: Path
) -> None:
    from kernos.policy.audit import AuditLog, generate_key, verify_offline
    from kernos.policy.audit.canonical import GENESIS, chain_hash, merkle_root
    from kernos.policy.audit.checkpoints import Checkpoint

    key = tmp_path / "keys" / "audit.pem"
    key.parent.mkdir()
    generate_key(key)
    archive = tmp_path / "archive"
    kernel = await make_kernel(
        audit_signing_key=key,
        retention=policy(audit={"archive_after": "1d", "archive_dir": str(archive)}),
    )
    await run(kernel, 2)
    made = await AuditLog.for_kernel(kernel).checkpoint()
    assert made.created and made.checkpoint is not None
    await run(kernel, 2)  # records after the checkpoint are not archived

    assert (await kernel.retention.run_once()).archived == []
    report = await kernel.retention.run_once(kernel.clock.now() + timedelta(days=2))
    [path] = [Path(p) for p in report.archived]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    checkpoint = Checkpoint.from_entry(lines[0], where=str(path))
    assert checkpoint.same_as(made.checkpoint) and checkpoint.signature_ok()
    records = lines[1:]
    assert [r["seq"] for r in records] == list(range(checkpoint.first_seq, checkpoint.last_seq + 1))
    prev = GENESIS
    for record in records:  # the archive verifies on its own: chain and Merkle root
        assert record["prev_hash"] == prev and chain_hash(prev, record["body"]) == record["hash"]
        prev = record["hash"]
    assert prev == checkpoint.head_hash
    assert merkle_root(r["hash"] for r in records) == checkpoint.root
    # Once per checkpoint; the chain is intact and every row still in the log.
    assert (await kernel.retention.run_once(kernel.clock.now() + timedelta(days=2))).archived == []
    assert await rows(kernel, AuditRow) > checkpoint.last_seq
    archived = [r for r in await _all_audit(kernel) if r.event == "retention.archived"]
    assert len(archived) == 1 and archived[0].args["records"] == len(records)
    result = await asyncio.to_thread(verify_offline, kernel.settings.db_url)
    assert result.ok, result.summary()


async def test_old_audit_archives_are_deleted_and_never_written_again(
    make_kernel, tmp_path: Path
) -> None:
    from kernos.policy.audit import AuditLog, generate_key, verify_offline

    key = tmp_path / "keys" / "audit.pem"
    key.parent.mkdir()
    generate_key(key)
    archive = tmp_path / "archive"
    rules = {"archive_after": "1d", "archive_max_age": "30d", "archive_dir": str(archive)}
    kernel = await make_kernel(audit_signing_key=key, retention=policy(audit=rules))
    await run(kernel, 2)
    made = await AuditLog.for_kernel(kernel).checkpoint()
    assert made.created
    now = kernel.clock.now()
    [path] = [Path(p) for p in (await kernel.retention.run_once(now + timedelta(days=2))).archived]
    assert path.exists()
    dry = await kernel.retention.run_once(now + timedelta(days=40), dry_run=True)
    assert dry.count("audit", "pruned_archives") == 1 and path.exists()
    report = await kernel.retention.run_once(now + timedelta(days=40))
    assert report.count("audit", "pruned_archives") == 1 and not path.exists()
    again = await kernel.retention.run_once(now + timedelta(days=41))
    assert again.archived == [] and not path.exists()  # too old to be archived again
    [record] = [r for r in await _all_audit(kernel) if (r.args or {}).get("pruned")]
    assert record.args["pruned"] == [path.name]
    result = await asyncio.to_thread(verify_offline, kernel.settings.db_url)
    assert result.ok, result.summary()  # the chain itself is untouched


def test_an_archive_must_be_kept_longer_than_it_waits() -> None:
    from pydantic import ValidationError

    from kernos.kernel.retention_policy import AuditRetention

    with pytest.raises(ValidationError, match="archive_max_age"):
        AuditRetention(archive_after="30d", archive_max_age="7d")
    with pytest.raises(ValidationError, match="archive_max_age"):
        AuditRetention(archive_max_age="7d")


async def _all_audit(kernel: Kernel) -> list[AuditRow]:
    async with kernel.db.read() as session:
        return list(await session.scalars(select(AuditRow).order_by(AuditRow.seq)))


# -- Storage of a long process ---------------------------------------------------------------


async def test_pruning_a_long_process_shrinks_its_checkpoint_storage(make_kernel) -> None:
    kernel = await make_kernel()
    pid = await run(kernel, 120)
    thread = await thread_of(kernel, pid)
    before = await checkpoint_storage(kernel, [thread])
    await Purger(kernel, policy=policy(checkpoints={"keep_last": 1})).run_once()
    after = await checkpoint_storage(kernel, [thread])
    assert after["checkpoints_rows"] == 1 and before["checkpoints_rows"] >= 120
    assert after["bytes"] * 10 < before["bytes"]
