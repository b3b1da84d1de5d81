"""Policy fixtures: a migrated, started database (SQLite and PostgreSQL) and engines on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kernos.kernel.settings import Settings
from kernos.kernel.storage import migrate
from kernos.kernel.storage.database import Database
from kernos.policy.engine import PolicyEngine
from kernos.policy.rules import DEFAULT_POLICY_PATH

EngineFactory = Callable[..., Awaitable[PolicyEngine]]


@pytest.fixture
async def database(kernos_settings: Settings) -> AsyncIterator[Database]:
    """The kernel database, migrated and started (its single writer running)."""
    kernos_settings.home.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate.upgrade, kernos_settings.db_url)
    db = Database(kernos_settings)
    await db.start()
    yield db
    await db.stop()


@pytest.fixture
async def open_engine(
    kernos_settings: Settings, database: Database
) -> AsyncIterator[EngineFactory]:
    """Start engines on the test's database: each ``second=True`` one has a Database of its
    own (its own writer and connections), like another process on the same database."""
    engines: list[PolicyEngine] = []
    extra: list[Database] = []

    async def factory(
        *,
        second: bool = False,
        refresh_seconds: float = 60.0,
        default_policy: Path = DEFAULT_POLICY_PATH,
    ) -> PolicyEngine:
        db = database
        if second:
            db = Database(kernos_settings)
            await db.start()
            extra.append(db)
        engine = PolicyEngine(db, refresh_seconds=refresh_seconds, default_policy=default_policy)
        await engine.start()
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        await engine.close()
    for db in extra:
        await db.stop()


@pytest.fixture
async def engine(open_engine: EngineFactory) -> PolicyEngine:
    """An engine seeded with the default policy."""
    return await open_engine()
