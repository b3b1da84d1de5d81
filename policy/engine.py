"""The policy engine: Casbin decisions through an exact cache, changes, and freshness.

Decisions come from the current ``PolicySnapshot`` (its enforcer and decision cache). A change
made through this engine is validated, compiled into a new snapshot off the event loop,
committed by the kernel's single writer together with a bump of the policy version, and
then swapped in with one assignment: a decision made after ``add``/``remove`` returns never
sees the old policy, and one that fails to parse or load changes nothing.

Changes written by another process (another kernel or engine on the same database) are found
through the version row: a decision made when the last version check is older than half of
``policy_refresh_seconds`` starts a check in the background, and one made when it is older
than the whole of it waits for a check (and a reload if the version moved). So every decision
is made with a policy that was current at most ``policy_refresh_seconds`` before it, while a
cached decision on a busy kernel never waits for the database.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import casbin  # type: ignore[import-untyped]
from sqlalchemy.exc import SQLAlchemyError

from kernos.kernel.clock import Clock, SystemClock
from kernos.kernel.errors import InvalidInput, StorageError
from kernos.kernel.settings import Settings
from kernos.kernel.storage.database import Database
from kernos.kernel.syscalls import Decision
from kernos.policy.cache import DEFAULT_MAX_CACHED, PolicySnapshot, build_enforcer
from kernos.policy.rules import (
    ANY,
    DEFAULT_POLICY_PATH,
    PolicyLine,
    check_roles,
    parse_line,
    parse_policy_text,
)
from kernos.policy.store import PolicyStore

log = logging.getLogger(__name__)

_monotonic = time.monotonic


def _compile(lines: Sequence[PolicyLine]) -> casbin.Enforcer:
    """An enforcer for candidate lines, proven to evaluate (blocking)."""
    try:
        enforcer = build_enforcer(lines)
        enforcer.enforce_ex("kernos-probe", "kernos-probe", "tool:kernos-probe", "call")
    except Exception as exc:  # whatever Casbin raises, the change must not go in
        raise InvalidInput(f"the policy would not load in Casbin ({exc}); nothing changed") from exc
    return enforcer


def _with(lines: Sequence[PolicyLine], line: PolicyLine) -> list[PolicyLine]:
    """``lines`` plus ``line`` at the end of its section (rules first, then role assignments),
    the order in which the database loads them."""
    rules = [ln for ln in lines if ln.ptype == "p" and ln != line]
    groups = [ln for ln in lines if ln.ptype == "g" and ln != line]
    return [*rules, line, *groups] if line.ptype == "p" else [*rules, *groups, line]


class PolicyEngine:
    """The policy in force for one kernel: cached Casbin decisions, changes, freshness."""

    def __init__(
        self,
        db: Database,
        *,
        refresh_seconds: float = 1.0,
        default_policy: Path = DEFAULT_POLICY_PATH,
        max_cached: int = DEFAULT_MAX_CACHED,
        clock: Clock | None = None,
    ) -> None:
        """An engine on a started ``db``; call ``start`` (or use ``open``) before deciding."""
        if refresh_seconds <= 0:
            raise ValueError("refresh_seconds must be positive")
        self._db = db
        self._store = PolicyStore(db.url)
        self._default_policy = default_policy
        self._max_cached = max_cached
        self._clock = clock or SystemClock()
        self._bound = refresh_seconds
        self._half = refresh_seconds / 2
        self._snapshot: PolicySnapshot | None = None
        self._verified_at = -math.inf
        self._refreshing: asyncio.Task[None] | None = None
        self._rejected: int | None = None
        self._changes = asyncio.Lock()

    @classmethod
    async def open(
        cls, db: Database, settings: Settings, *, clock: Clock | None = None
    ) -> PolicyEngine:
        """A started engine for a kernel's database and settings."""
        engine = cls(db, refresh_seconds=settings.policy_refresh_seconds, clock=clock)
        await engine.start()
        return engine

    async def start(self) -> None:
        """Seed the default policy into a database that never had one, then load the policy.

        ``InvalidInput`` if the default policy file or the stored policy is malformed.
        """
        path = self._default_policy
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        lines = parse_policy_text(text, source=str(path))
        await self._db.write(self._store.seed_job(lines, now=self._clock.now()))
        started = _monotonic()
        self._install(await asyncio.to_thread(self._load))
        self._verified_at = started

    async def close(self) -> None:
        """Stop refreshing and close the engine's read connections."""
        task = self._refreshing
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(self._store.close)

    # -- Decisions ---------------------------------------------------------------------------

    async def snapshot(self) -> PolicySnapshot:
        """The policy to decide with: current as of at most ``refresh_seconds`` ago.

        Decide several questions with one snapshot to answer them all from the same policy.
        ``StorageError`` if the policy is too old and the database cannot be read.
        """
        age = _monotonic() - self._verified_at
        if age > self._half:
            if age > self._bound:
                await asyncio.shield(self._refresh_task())
            else:
                self._refresh_task()
        snapshot = self._snapshot
        if snapshot is None:
            raise RuntimeError("PolicyEngine.start() was not called")
        return snapshot

    async def check(self, subject: str, tenant: str, obj: str, action: str) -> Decision:
        """May ``subject`` (``alice``, ``agent:NAME``, ``role:NAME``) do ``action`` to ``obj``
        in ``tenant``? The decision names the rule that decided.

        ``InvalidInput`` for an unknown action or object kind.
        """
        return (await self.snapshot()).decide(subject, tenant, obj, action)

    @property
    def version(self) -> int:
        """The version of the policy in force here."""
        return self._current.version

    @property
    def roles(self) -> frozenset[str]:
        """Role names (``admin``, ``operator``, ...) the policy defines."""
        return self._current.roles

    async def list(self, tenant: str | None = None) -> list[PolicyLine]:
        """The lines in force (rules, then role assignments), or those that apply in
        ``tenant`` (its own and those for every tenant, ``*``)."""
        lines = (await self.snapshot()).lines
        if tenant is None:
            return list(lines)
        return [line for line in lines if line.tenant in (tenant, ANY)]

    # -- Changes -----------------------------------------------------------------------------

    async def add(self, line: str) -> PolicyLine:
        """Add a line; it is in force when this returns. Returns the stored (canonical) line.

        ``InvalidInput`` if it is malformed or names an unknown role, ``Conflict`` if the
        policy has it already. On any error the policy in force stays as it was.
        """
        return await self._change(line, add=True, strict=True)

    async def remove(self, line: str) -> PolicyLine:
        """Remove a line; ``NotFound`` if the policy has no such line."""
        return await self._change(line, add=False, strict=True)

    async def grant_role(self, member: str, role: str, tenant: str) -> None:
        """Give ``member`` (a principal name or ``agent:NAME``) ``role`` in ``tenant``;
        nothing happens if it has that role there already."""
        await self._change(f"g, {member}, {role}, {tenant}", add=True, strict=False)

    async def _change(self, text: str, *, add: bool, strict: bool) -> PolicyLine:
        async with self._changes:
            current = await self.snapshot()
            line = parse_line(text, roles=current.roles)
            if add:
                check_roles(line, current.roles)
                candidate = _with(current.lines, line)
            else:
                candidate = [ln for ln in current.lines if ln != line]
            enforcer = await asyncio.to_thread(_compile, candidate)
            started = _monotonic()
            job = self._store.change_job(line, add=add, now=self._clock.now(), strict=strict)
            result = await self._db.write(job)
            if result is None:
                return line
            before, after = result
            if before == current.version:
                snapshot = PolicySnapshot(
                    candidate, version=after, enforcer=enforcer, max_cached=self._max_cached
                )
                self._install(snapshot)
                self._verified_at = max(self._verified_at, started)
            else:  # another process changed the policy meanwhile: take the stored one
                await self._reload(started)
            log.info(
                "policy changed",
                extra={"change": "add" if add else "remove", "line": line.text, "version": after},
            )
            return line

    # -- Freshness ---------------------------------------------------------------------------

    @property
    def _current(self) -> PolicySnapshot:
        if self._snapshot is None:
            raise RuntimeError("PolicyEngine.start() was not called")
        return self._snapshot

    def _load(self) -> PolicySnapshot:
        version, enforcer, lines = self._store.load()
        return PolicySnapshot(
            lines, version=version, enforcer=enforcer, max_cached=self._max_cached
        )

    def _install(self, snapshot: PolicySnapshot) -> None:
        # Versions only grow: a load that raced a newer change must not put older lines back.
        if self._snapshot is None or snapshot.version > self._snapshot.version:
            self._snapshot = snapshot

    def _refresh_task(self) -> asyncio.Task[None]:
        task = self._refreshing
        if task is None:
            task = asyncio.create_task(self._refresh(), name="kernos-policy-refresh")
            task.add_done_callback(self._refreshed)
            self._refreshing = task
        return task

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        if self._refreshing is task:
            self._refreshing = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("cannot check the policy version: %s", task.exception())

    async def _refresh(self) -> None:
        started = _monotonic()
        try:
            version = await asyncio.to_thread(self._store.read_version)
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot read the policy version: {exc.__class__.__name__}; is the database up?"
            ) from exc
        if version not in (self._current.version, self._rejected):
            await self._reload(started, version=version)
        self._verified_at = max(self._verified_at, started)

    async def _reload(self, started: float, *, version: int | None = None) -> None:
        try:
            snapshot = await asyncio.to_thread(self._load)
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot load the policy: {exc.__class__.__name__}; is the database up?"
            ) from exc
        except InvalidInput as exc:
            # Another process stored a line that does not load: keep the policy in force.
            self._rejected = version
            log.error("stored policy rejected, the previous one stays in force: %s", exc)
            self._verified_at = max(self._verified_at, started)
            return
        self._install(snapshot)
        self._verified_at = max(self._verified_at, started)
