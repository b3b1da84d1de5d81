"""The hash chain as the sink writes it: canonical bodies, Merkle roots, group commit with a
failing job or a failing batch, restart, adoption of unchained rows, migration 0006, and a
real kernel's governed tool call (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from typing import Any, TypedDict

import pytest
from alembic import command
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from kernos.kernel.catalog import AgentSpec, ToolSpec
from kernos.kernel.clock import SystemClock
from kernos.kernel.errors import InvalidInput, StorageError
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import LOCAL_ADMIN, Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import Settings
from kernos.kernel.stages import PlainAuditSink
from kernos.kernel.storage import migrate
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import AuditRow
from kernos.kernel.syscalls import AuditRecord
from kernos.policy.audit import GENESIS, HashChainAuditSink
from kernos.policy.audit.canonical import (
    body_parts,
    canonical_body,
    iso_utc,
    join_body,
    merkle_root,
)
from kernos.policy.audit.verify import verify_url

CLOCK = SystemClock()


def record(i: int, **fields: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "event": "syscall.intent",
        "tenant": "default",
        "principal": "default/admin",
        "pid": i,
        "args": {"i": i, "text": "grüße ✓", "nested": {"b": [1, 2.5, None], "a": True}},
    }
    values.update(fields)
    return AuditRecord(**values)


def appending(sink: HashChainAuditSink, *records: AuditRecord, fail: bool = False):
    def job(session: Session) -> int:
        for rec in records:
            sink.append(session, rec)
        if fail:
            raise RuntimeError("this job fails after appending")
        return len(records)

    return job


async def chain(db: Database) -> list[tuple[int, int | None, str]]:
    async with db.read() as session:
        rows = await session.execute(select(AuditRow.seq, AuditRow.pid, AuditRow.hash))
        return [(r.seq, r.pid, r.hash) for r in rows]


def rfc6962(leaves: list[bytes]) -> bytes:
    """The recursive definition, as a reference for the incremental builder."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    left, right = rfc6962(leaves[:split]), rfc6962(leaves[split:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_the_fast_body_is_the_canonical_json() -> None:
    ts = datetime(2026, 11, 28, 10, 0, 0, 5, tzinfo=UTC)
    values = {
        "event": "syscall.result",
        "tenant": "acme",
        "principal": "acme/ops",
        "pid": 7,
        "summary": 'the "answer" is 42 \u2028 ünïcode',
        "args": {"z": 1, "a": {"y": [3, {"b": 1, "a": 2}]}},
    }
    head, tail, args_json = body_parts(values, iso_utc(ts))
    body = join_body(head, 12, tail)
    assert json.loads(args_json or "") == values["args"]
    assert body == canonical_body(values, seq=12, ts=ts)
    parsed = json.loads(body)
    assert parsed["seq"] == 12 and parsed["ts"] == "2026-11-28T10:00:00.000005+00:00"
    assert body == json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_merkle_root_is_rfc6962() -> None:
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(37)]
    for n in range(1, 38):
        leaves = [bytes.fromhex(h) for h in hashes[:n]]
        assert merkle_root(hashes[:n]) == rfc6962(leaves).hex(), n


@pytest.fixture
async def sink(database: Database) -> HashChainAuditSink:
    return await HashChainAuditSink.open(database, CLOCK)


async def test_group_commit_with_a_failing_job_keeps_the_chain_gapless(
    database: Database, sink: HashChainAuditSink, kernos_settings: Settings
) -> None:
    jobs = []
    for i in range(60):
        recs = [record(i), record(i, event="syscall.result")]
        jobs.append(database.write(appending(sink, *recs, fail=i % 7 == 3)))
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    failed = {i for i, o in enumerate(outcomes) if isinstance(o, RuntimeError)}
    assert failed == {i for i in range(60) if i % 7 == 3}
    assert database.writer_stats.largest_batch > 1  # they really shared group commits
    rows = await chain(database)
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))
    assert {pid for _, pid, _ in rows} == set(range(60)) - failed
    assert len(rows) == 2 * (60 - len(failed))
    result = await asyncio.to_thread(verify_url, kernos_settings.db_url)
    assert result.ok and result.records == len(rows), result


_REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_log WHEN NEW.pid = 666 "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF NEW.pid = 666 THEN "
        "RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
}


async def test_a_failed_batch_leaves_no_trace_in_the_chain(
    database: Database, sink: HashChainAuditSink, kernos_settings: Settings
) -> None:
    engine = create_engine(migrate.sync_url(kernos_settings.db_url))
    with engine.begin() as conn:
        for statement in _REFUSE[database.dialect]:
            conn.exec_driver_sql(statement)
    engine.dispose()
    # The database refuses the chained insert of the whole group commit (twice: the batch,
    # then its isolated retry), so every job sharing a batch with pid 666 fails.
    jobs = [database.write(appending(sink, record(i))) for i in range(40)]
    jobs.insert(20, database.write(appending(sink, record(666))))
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(outcomes[20], StorageError)
    written = [
        i for i, o in zip([*range(20), 666, *range(20, 40)], outcomes, strict=True) if o == 1
    ]
    assert len(written) < 40  # others went down with it
    await database.write(appending(sink, record(1000)))
    rows = await chain(database)
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))
    assert [pid for _, pid, _ in rows] == [*written, 1000]
    assert (await asyncio.to_thread(verify_url, kernos_settings.db_url)).ok


async def test_one_bad_record_fails_its_own_job_only(
    database: Database, sink: HashChainAuditSink
) -> None:
    outcomes = await asyncio.gather(
        database.write(appending(sink, record(1))),
        database.write(appending(sink, record(2, tenant="t" * 64))),  # longer than the column
        database.write(appending(sink, record(3, args={"when": datetime.now(UTC)}))),  # not JSON
        database.write(appending(sink, record(4))),
        return_exceptions=True,
    )
    assert outcomes[0] == 1 and outcomes[3] == 1
    assert isinstance(outcomes[1], InvalidInput) and isinstance(outcomes[2], TypeError)
    assert [(seq, pid) for seq, pid, _ in await chain(database)] == [(1, 1), (2, 4)]


async def test_a_row_written_behind_the_sinks_back_is_adopted(
    database: Database, sink: HashChainAuditSink, kernos_settings: Settings
) -> None:
    await database.write(appending(sink, record(1), record(2)))
    engine = create_engine(migrate.sync_url(kernos_settings.db_url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_log (seq, ts, tenant, principal, event) "
                "VALUES (3, :ts, 'default', 'default/intruder', 'manual')"
            ),
            {"ts": datetime(2026, 1, 1)},
        )
    engine.dispose()
    # The sink's insert at seq 3 collides; the batch rolls back, the head is read again (the
    # foreign row is chained, as a plain sink's would be) and the retry succeeds.
    await database.write(appending(sink, record(4)))
    rows = await chain(database)
    assert [(seq, pid) for seq, pid, _ in rows] == [(1, 1), (2, 2), (3, None), (4, 4)]
    assert sink.adopted == 1
    assert (await asyncio.to_thread(verify_url, kernos_settings.db_url)).ok


async def test_rows_of_the_plain_sink_are_adopted(
    database: Database, kernos_settings: Settings
) -> None:
    plain = PlainAuditSink(CLOCK)

    def plain_job(session: Session) -> None:
        for i in range(3):
            plain.append(session, record(i))

    await database.write(plain_job)
    sink = await HashChainAuditSink.open(database, CLOCK)
    assert sink.adopted == 3
    await database.write(appending(sink, record(9)))
    rows = await chain(database)
    assert [seq for seq, _, _ in rows] == [1, 2, 3, 4] and all(h for _, _, h in rows)
    assert (await asyncio.to_thread(verify_url, kernos_settings.db_url)).ok


def admin() -> Principal:
    return Principal(tenant="default", name=LOCAL_ADMIN, kind=PrincipalKind.PERSON)


async def echo(x: int) -> int:
    return x


class LoopState(TypedDict, total=False):
    calls: int


class ToolAgent:
    @hookimpl
    def register_tools(self, register: Any) -> None:
        register(ToolSpec(name="echo", description="Return x.", func=echo))

    @hookimpl
    def register_agents(self, register: Any) -> None:
        from langgraph.graph import END, START, StateGraph

        def build(build: Any) -> Any:
            tool = build.tools[0]

            async def call(state: LoopState) -> LoopState:
                for i in range(state["calls"]):
                    await tool.ainvoke({"x": i})
                return {}

            graph = StateGraph(LoopState)
            graph.add_node("call", call)
            graph.add_edge(START, "call")
            graph.add_edge("call", END)
            return graph.compile()

        register(AgentSpec(name="caller", description="Calls echo.", build=build, tools=("echo",)))


def new_kernel(settings: Settings) -> Kernel:
    plugins = PluginManager(entry_points=False)
    plugins.add(ToolAgent(), name="audit-test-agents")
    kernel = Kernel(settings, plugins=plugins)
    kernel.audit_sink = HashChainAuditSink(kernel.db, kernel.clock)
    return kernel


async def test_a_kernel_chains_its_governed_calls_across_a_restart(
    kernos_settings: Settings,
) -> None:
    pids = []
    for _ in range(2):  # the second kernel (a restart) reads the head from the last row
        kernel = new_kernel(kernos_settings)
        await kernel.start()
        try:
            info = await kernel.processes.spawn("caller", {"calls": 3}, principal=admin())
            done = await kernel.processes.wait(info.pid, timeout=60)
            assert done.state.value == "done", done.error
            pids.append(info.pid)
        finally:
            await kernel.stop()
    engine = create_engine(migrate.sync_url(kernos_settings.db_url))
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT seq, pid, event, hash, prev_hash, body FROM audit_log ORDER BY seq")
        ).all()
    engine.dispose()
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    prev = GENESIS
    for row in rows:
        assert row.prev_hash == prev
        assert row.hash == hashlib.sha256((prev + row.body).encode()).hexdigest()
        prev = row.hash
    for pid in pids:
        events = [r.event for r in rows if r.pid == pid]
        assert events.count("syscall.intent") == 3 and events.count("syscall.result") == 3
    result = await asyncio.to_thread(verify_url, kernos_settings.db_url)
    assert result.ok and result.records == len(rows), result


def test_migration_0006_chains_the_rows_of_an_older_database(kernos_settings: Settings) -> None:
    kernos_settings.home.mkdir(parents=True, exist_ok=True)
    url = migrate.sync_url(kernos_settings.db_url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            config = migrate._config()
            config.attributes["connection"] = conn
            command.upgrade(config, "0005")
            for seq in (3, 4, 9):  # gaps, as rolled-back inserts leave on PostgreSQL
                conn.execute(
                    text(
                        "INSERT INTO audit_log (seq, ts, tenant, principal, event, args) "
                        "VALUES (:seq, :ts, 'default', 'default/admin', 'old', :args)"
                    ),
                    {"seq": seq, "ts": datetime(2026, 1, 1, 0, 0, seq), "args": '{"k": 1}'},
                )
    finally:
        engine.dispose()
    migrate.upgrade(kernos_settings.db_url)
    result = verify_url(kernos_settings.db_url)
    assert result.ok and result.records == 3, result
