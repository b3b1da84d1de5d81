"""Applying Alembic migrations on start, and refusing a schema newer than this code."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from kernos.kernel.errors import SchemaTooNew, StorageError, StorageUnavailable
from kernos.kernel.settings import shown_url

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).parent / "migrations"


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationResult:
    """Revisions before and after ``upgrade``."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        """Whether any migration ran."""
        return self.before != self.after


def sync_url(url: URL) -> URL:
    """The synchronous driver URL for an async one (Alembic runs synchronously)."""
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite")
    return url.set(drivername="postgresql+psycopg")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise StorageError("no migrations are packaged with this Kernos; reinstall it")
    return head


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return (str(orig or exc).strip().splitlines() or [type(exc).__name__])[0]


def upgrade(url: URL) -> MigrationResult:
    """Migrate the database at ``url`` to the newest revision (blocking; run off the loop).

    Raises ``SchemaTooNew`` if the database is at a revision this code does not know,
    ``StorageUnavailable`` if it cannot be reached and ``StorageError`` if it cannot be migrated.
    """
    from alembic import command

    config = _config()
    script = ScriptDirectory.from_config(config)
    shown = shown_url(url)
    engine = create_engine(sync_url(url), hide_parameters=True)
    try:
        engine.connect().close()
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StorageUnavailable(
            f"cannot connect to database {shown}: {_reason(exc)}; is it running and reachable?"
        ) from exc
    try:
        with engine.begin() as connection:
            before = MigrationContext.configure(connection).get_current_revision()
            if before is not None:
                try:
                    script.get_revision(before)
                except CommandError:
                    raise SchemaTooNew(
                        f"database {shown} is at schema revision {before!r}, newer than this "
                        f"Kernos knows (newest {script.get_current_head()!r}); upgrade Kernos, "
                        "or point KERNOS_DATABASE_URL at a database of this version"
                    ) from None
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            after = MigrationContext.configure(connection).get_current_revision()
    except (SchemaTooNew, StorageError):
        raise
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot migrate database {shown}: {_reason(exc)}") from exc
    finally:
        engine.dispose()
    if after is None:  # pragma: no cover - upgrade to head always stamps a revision
        raise StorageError(f"migrating {shown} left no schema revision")
    if before != after:
        log.info("migrated database from %s to %s", before or "empty", after)
    return MigrationResult(before=before, after=after)
