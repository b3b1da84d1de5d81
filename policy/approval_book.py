"""``ApprovalRuleBook``: approval rules in the kernel database, looked up after each decision.

Rules live in ``approval_rules``. Every change bumps the policy's version row
(``policy_version``) in the same transaction, so it has the policy's freshness: this book
reloads when the policy snapshot a decision was made with is newer than its rules, and the
policy engine notices a newer version (its own refresh) within ``policy_refresh_seconds``. A
change made through this book is in force when ``add_approval_rule``/``remove_approval_rule``
returns.

Lookups are cached per (tenant, object, action): the rules that could apply, in order. The
cache belongs to one version of the rules and is dropped with it. Conditions are evaluated on
each call's arguments (parsed once, no ``eval``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from kernos.kernel.clock import Clock
from kernos.kernel.errors import Conflict, InvalidInput, NotFound, StorageError
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import ApprovalRuleRow, PolicyVersionRow
from kernos.kernel.syscalls import ApprovalRequirement, AuthRequest
from kernos.policy.approval_rules import ApprovalRule, parse_approval_rule
from kernos.policy.conditions import Condition
from kernos.policy.rules import ANY
from kernos.policy.store import VERSION_ID

log = logging.getLogger(__name__)

MAX_CACHED = 50_000
"""(tenant, object, action) lookups a rule set keeps; past this it starts over."""


_Candidate = tuple[Condition, ApprovalRequirement]


class _RuleSet:
    """Rules at one policy version, with the lookup cache in front of them."""

    __slots__ = ("_cache", "_prepared", "rules", "version")

    def __init__(self, rules: Sequence[ApprovalRule], *, version: int) -> None:
        self.rules = tuple(rules)
        self.version = version
        # Each rule's requirement is built once (its canonical text is not cheap).
        self._prepared = [(rule, (rule.condition, rule.requirement)) for rule in self.rules]
        self._cache: dict[tuple[str, str, str], tuple[_Candidate, ...]] = {}

    def candidates(self, tenant: str, obj: str, action: str) -> tuple[_Candidate, ...]:
        key = (tenant, obj, action)
        found = self._cache.get(key)
        if found is None:
            found = tuple(c for r, c in self._prepared if r.applies_to(tenant, obj, action))
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[key] = found
        return found


class ApprovalRuleBook:
    """The approval rules in force for one kernel: lookups, changes, freshness."""

    def __init__(self, db: Database, *, clock: Clock, roles: Callable[[], Collection[str]]) -> None:
        """A book on a started ``db``; ``roles()`` names the roles the policy defines now
        (a rule naming another is refused). Call ``start`` before looking anything up."""
        self._db = db
        self._clock = clock
        self._roles = roles
        self._set = _RuleSet((), version=-1)
        self._loading = asyncio.Lock()
        self._changes = asyncio.Lock()

    async def start(self) -> None:
        """Load the stored rules (``InvalidInput`` if one of them is malformed)."""
        self._set = await self._load()

    @property
    def version(self) -> int:
        """The policy version the rules in force were read at."""
        return self._set.version

    # -- Lookups -----------------------------------------------------------------------------

    async def requirement(
        self, request: AuthRequest, *, version: int
    ) -> ApprovalRequirement | None:
        """The approval the first matching rule requires for ``request``, or ``None``.

        ``version`` is the policy version the request was decided with: rules older than it
        are reloaded first. ``StorageError`` if they must be and cannot be.
        """
        current = self._set
        if current.version < version:
            current = await self._refresh(version)
        for condition, requirement in current.candidates(
            request.tenant, request.obj, request.action
        ):
            if condition.holds(request.args):
                return requirement
        return None

    async def approval_rules(self, tenant: str | None = None) -> list[ApprovalRule]:
        """The rules in force, in the order they are tried, or those that apply in ``tenant``
        (its own and those for every tenant, ``*``)."""
        rules = self._set.rules
        if tenant is None:
            return list(rules)
        return [rule for rule in rules if rule.tenant in (tenant, ANY)]

    # -- Changes -----------------------------------------------------------------------------

    async def add_approval_rule(self, line: str) -> ApprovalRule:
        """Add a rule (tried after those there already); in force when this returns. Returns
        it in canonical form. ``InvalidInput`` if it is malformed or names an unknown role,
        ``Conflict`` if it is there already; on any error the rules stay as they were."""
        rule = parse_approval_rule(line, roles=self._roles())
        await self._change(rule, add=True)
        return rule

    async def remove_approval_rule(self, line: str) -> ApprovalRule:
        """Remove a rule; ``NotFound`` if there is no such rule."""
        rule = parse_approval_rule(line)
        await self._change(rule, add=False)
        return rule

    async def _change(self, rule: ApprovalRule, *, add: bool) -> None:
        now = self._clock.now()

        def job(session: Session) -> int:
            version = session.scalar(
                select(PolicyVersionRow).where(PolicyVersionRow.id == VERSION_ID).with_for_update()
            )
            if version is None:
                raise StorageError(
                    "the policy_version row is missing; the database was not migrated"
                )
            existing = session.scalar(
                select(ApprovalRuleRow).where(ApprovalRuleRow.line == rule.text)
            )
            if add:
                if existing is not None:
                    raise Conflict(f"the approval rule {rule.text!r} is there already")
                session.add(
                    ApprovalRuleRow(
                        line=rule.text,
                        tenant=rule.tenant,
                        object=rule.obj,
                        action=rule.action,
                        condition=rule.condition.text,
                        role=rule.role,
                        deadline_seconds=rule.deadline_seconds,
                        escalation=list(rule.escalation),
                        created_at=now,
                    )
                )
            else:
                if existing is None:
                    raise NotFound(
                        f"there is no approval rule {rule.text!r}; see "
                        "`kernos policy approval-rules list`"
                    )
                session.delete(existing)
            version.version += 1
            version.changed_at = now
            return version.version

        async with self._changes:
            after = await self._db.write(job)
            await self._refresh(after)
        log.info(
            "approval rules changed",
            extra={"change": "add" if add else "remove", "line": rule.text, "version": after},
        )

    # -- Loading -----------------------------------------------------------------------------

    async def _refresh(self, version: int) -> _RuleSet:
        async with self._loading:
            if self._set.version >= version:
                return self._set
            try:
                loaded = await self._load()
            except InvalidInput as exc:
                # Another process stored a rule that does not parse: keep the rules in force.
                log.error("stored approval rules rejected, the previous ones stay: %s", exc)
                loaded = _RuleSet(self._set.rules, version=version)
            if loaded.version > self._set.version:
                self._set = loaded
            return self._set

    async def _load(self) -> _RuleSet:
        try:
            async with self._db.read() as session:
                # The version first: rules read after it are at least that new.
                version = await session.scalar(
                    select(PolicyVersionRow.version).where(PolicyVersionRow.id == VERSION_ID)
                )
                rows = list(
                    await session.scalars(select(ApprovalRuleRow).order_by(ApprovalRuleRow.id))
                )
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot load the approval rules: {exc.__class__.__name__}; is the database up?"
            ) from exc
        if version is None:
            raise StorageError("the policy_version row is missing; the database was not migrated")
        rules: list[ApprovalRule] = []
        for row in rows:
            try:
                rules.append(parse_approval_rule(row.line))
            except InvalidInput as exc:
                raise InvalidInput(f"stored approval rule {row.id}: {exc.message}") from None
        return _RuleSet(rules, version=version)
