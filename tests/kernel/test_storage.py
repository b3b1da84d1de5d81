"""Storage on SQLite and PostgreSQL: migrations, the single writer's group commit, reads."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kernos.kernel.clock import SystemClock
from kernos.kernel.errors import SchemaTooNew, StorageError, StorageUnavailable
from kernos.kernel.settings import Settings
from kernos.kernel.storage import migrate
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import Base, TenantRow
from kernos.kernel.telemetry import Telemetry

NOW = SystemClock().now()


def test_migrating_an_empty_database_yields_the_models(kernos_settings: Settings) -> None:
    kernos_settings.home.mkdir(parents=True, exist_ok=True)
    result = migrate.upgrade(kernos_settings.db_url)
    assert result.before is None
    assert result.after == migrate.head_revision()
    engine = create_engine(migrate.sync_url(kernos_settings.db_url))
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diffs == []
    # Running again changes nothing.
    assert not migrate.upgrade(kernos_settings.db_url).changed


def test_a_schema_newer_than_the_code_is_refused(kernos_settings: Settings) -> None:
    kernos_settings.home.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(kernos_settings.db_url)
    engine = create_engine(migrate.sync_url(kernos_settings.db_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    with pytest.raises(SchemaTooNew, match="9999_from_the_future.*upgrade Kernos"):
        migrate.upgrade(kernos_settings.db_url)


def test_an_unreachable_database_is_a_clear_storage_error(tmp_path) -> None:
    from sqlalchemy.engine import make_url

    url = make_url("postgresql+psycopg://kernos:secret@127.0.0.1:1/nowhere")
    with pytest.raises(StorageUnavailable, match="cannot connect to database.*reachable") as info:
        migrate.upgrade(url)
    assert "secret" not in str(info.value)


@pytest.fixture
async def database(kernos_settings: Settings):
    kernos_settings.home.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate.upgrade, kernos_settings.db_url)
    db = Database(kernos_settings, telemetry=Telemetry())
    await db.start()
    yield db
    await db.stop()


def _add_tenant(name: str):
    def job(session: Session) -> str:
        session.add(TenantRow(name=name, display_name="", created_at=NOW, disabled=False))
        session.flush()
        return name

    return job


async def _count(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(TenantRow)) or 0)


async def test_concurrent_writes_are_group_committed(database: Database) -> None:
    names = [f"t{i}" for i in range(300)]
    results = await asyncio.gather(*(database.write(_add_tenant(n)) for n in names))
    assert results == names
    assert await _count(database) == 300
    stats = database.writer_stats
    assert stats.writes == 300
    # Submitted together, they share commits: far fewer transactions than writes.
    assert stats.commits < 300 / 4
    assert stats.largest_batch > 1


async def test_a_failing_write_rolls_back_alone(database: Database) -> None:
    await database.write(_add_tenant("dup"))

    def boom(session: Session) -> None:
        session.add(TenantRow(name="half-done", display_name="", created_at=NOW, disabled=False))
        session.flush()
        raise RuntimeError("job failed after writing")

    outcomes = await asyncio.gather(
        database.write(_add_tenant("a")),
        database.write(_add_tenant("dup")),  # unique violation
        database.write(boom),
        database.write(_add_tenant("b")),
        return_exceptions=True,
    )
    assert outcomes[0] == "a" and outcomes[3] == "b"
    assert isinstance(outcomes[1], IntegrityError)
    assert isinstance(outcomes[2], RuntimeError)
    async with database.read() as session:
        stored = set(await session.scalars(select(TenantRow.name)))
    assert stored == {"dup", "a", "b"}


async def test_stop_commits_what_was_submitted(kernos_settings: Settings) -> None:
    kernos_settings.home.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate.upgrade, kernos_settings.db_url)
    db = Database(kernos_settings)
    await db.start()
    pending = [asyncio.create_task(db.write(_add_tenant(f"s{i}"))) for i in range(50)]
    await asyncio.sleep(0)  # all submitted, none necessarily committed
    await db.stop()
    assert [t.result() for t in pending] == [f"s{i}" for i in range(50)]
    with pytest.raises(StorageError, match="not open"):
        await db.write(_add_tenant("late"))
    db2 = Database(kernos_settings)
    await db2.start()
    try:
        assert await _count(db2) == 50
    finally:
        await db2.stop()


@pytest.mark.parametrize("kernos_database_url", [None], ids=["sqlite"])
async def test_sqlite_runs_in_wal_mode(kernos_settings: Settings, database: Database) -> None:
    assert kernos_settings.is_sqlite
    async with database.read() as session:
        mode = await session.scalar(text("PRAGMA journal_mode"))
        fks = await session.scalar(text("PRAGMA foreign_keys"))
    assert mode == "wal"
    assert fks == 1


async def test_a_job_raising_cancelled_error_fails_alone(database: Database) -> None:
    def cancelled(session: Session) -> None:
        raise asyncio.CancelledError

    outcomes = await asyncio.gather(
        database.write(cancelled), database.write(_add_tenant("after")), return_exceptions=True
    )
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1] == "after"
    # The writer is alive and keeps committing.
    assert await asyncio.wait_for(database.write(_add_tenant("later")), timeout=10) == "later"


async def test_a_dead_writer_refuses_work_instead_of_hanging(kernos_settings: Settings) -> None:
    kernos_settings.home.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate.upgrade, kernos_settings.db_url)
    db = Database(kernos_settings)
    await db.start()
    try:
        writer_task = db._writer._task  # the writer task, killed from outside
        writer_task.cancel()
        await asyncio.gather(writer_task, return_exceptions=True)
        with pytest.raises(StorageError, match="not running"):
            await asyncio.wait_for(db.write(_add_tenant("x")), timeout=10)
    finally:
        await db.stop()


async def test_readers_cannot_write(database: Database) -> None:
    from sqlalchemy.exc import DBAPIError

    async with database.read() as session:
        with pytest.raises(DBAPIError, match="(?i)read.only|readonly|query_only"):
            await session.execute(text("DELETE FROM tenants"))
