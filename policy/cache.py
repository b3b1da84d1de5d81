"""One version of the policy: its Casbin enforcer and the exact decision cache in front of it.

pycasbin re-parses its matcher and walks every rule on each ``enforce`` (about 1 ms with a
410-line policy). A decision depends only on the request and the policy, so a snapshot —
immutable lines, their enforcer, and a cache of the decisions made with them — can answer a
repeated request from a dict. The cache is exact because it is never invalidated piecemeal:
a policy change builds a new snapshot with an empty cache and the engine swaps the reference,
so no decision made with old lines can be returned once the new ones are in force.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import casbin  # type: ignore[import-untyped]
from casbin import persist

from kernos.kernel.syscalls import Decision
from kernos.policy.rules import (
    AGENT_PREFIX,
    MODEL_PATH,
    PolicyLine,
    defined_roles,
    validate_request,
)

DEFAULT_MAX_CACHED = 50_000
"""Decisions a snapshot keeps; past this it starts over (memory stays bounded)."""

NO_RULE = "deny-by-default: no rule matched"
"""The rule named when nothing allowed a request."""

# Casbin logs every decision at INFO/WARNING on "casbin.enforcer"; decisions belong in the
# audit log, not the kernel's log. A logger outside the hierarchy, above CRITICAL, says nothing.
_QUIET = logging.Logger("kernos.policy.casbin", level=logging.CRITICAL + 1)


class _LinesAdapter(persist.Adapter):  # type: ignore[misc]  # pycasbin is untyped
    """Loads validated lines into a Casbin model (the way every Casbin adapter does)."""

    def __init__(self, lines: Iterable[PolicyLine]) -> None:
        self._lines = [line.text for line in lines]

    def load_policy(self, model: Any) -> None:
        for text in self._lines:
            persist.load_policy_line(text, model)


def build_enforcer(lines: Iterable[PolicyLine]) -> casbin.Enforcer:
    """A plain Casbin enforcer for ``lines`` on the Kernos model (blocking: a few ms)."""
    enforcer = casbin.Enforcer(str(MODEL_PATH), _LinesAdapter(lines))
    enforcer.enable_auto_save(False)
    enforcer.logger = _QUIET
    return enforcer


def rule_text(explain: Sequence[str]) -> str:
    """The rule Casbin's ``enforce_ex`` named, as a policy line."""
    return "p, " + ", ".join(explain) if explain else NO_RULE


class PolicySnapshot:
    """Immutable policy lines at one version, their enforcer and their decision cache."""

    __slots__ = ("_cache", "_enforcer", "_max", "agents", "lines", "roles", "version")

    def __init__(
        self,
        lines: Sequence[PolicyLine],
        *,
        version: int,
        enforcer: casbin.Enforcer | None = None,
        max_cached: int = DEFAULT_MAX_CACHED,
    ) -> None:
        """Build the enforcer unless given one already loaded with ``lines`` (blocking, a few
        ms: construct snapshots off the event loop)."""
        self.version = version
        self.lines: tuple[PolicyLine, ...] = tuple(lines)
        self.roles: frozenset[str] = defined_roles(self.lines)
        """Role names (bare) the policy defines."""
        self.agents: frozenset[str] = frozenset(
            line.subject for line in self.lines if line.subject.startswith(AGENT_PREFIX)
        )
        """Agent subjects (``agent:NAME``) any line mentions; others fall back to manifests."""
        self._enforcer = enforcer if enforcer is not None else build_enforcer(self.lines)
        self._cache: dict[tuple[str, str, str, str], Decision] = {}
        self._max = max_cached

    def decide(self, subject: str, tenant: str, obj: str, action: str) -> Decision:
        """May ``subject`` do ``action`` to ``obj`` in ``tenant``, by these lines?

        ``InvalidInput`` for an unknown action or object kind (never cached).
        """
        key = (subject, tenant, obj, action)
        found = self._cache.get(key)
        if found is not None:
            return found
        validate_request(obj, action)
        allowed, explain = self._enforcer.enforce_ex(subject, tenant, obj, action)
        decision = Decision(allowed=bool(allowed), rule=rule_text(explain))
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[key] = decision
        return decision

    @property
    def cached(self) -> int:
        """Decisions in the cache now."""
        return len(self._cache)
