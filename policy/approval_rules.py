"""Approval rules: which allowed calls must wait for a human, of which role, for how long.

One line per rule::

    a, TENANT, OBJECT, ACTION, CONDITION, ROLE[, DEADLINE[, ESCALATION, ...]]
    a, city, tool:dispatch_trucks, call, hazard == true, inspector, 15m, admin

* ``TENANT``: a tenant name or ``*`` (every tenant);
* ``OBJECT``: ``KIND:NAME`` as in policy lines, ``NAME`` may end in ``*`` (Casbin's
  ``keyMatch``: ``tool:dispatch_*``), or ``*`` for every object; ``ACTION``: ``call``, ... or
  ``*``;
* ``CONDITION``: ``*`` or clauses on the call's arguments (``kernos.policy.conditions``);
* ``ROLE``: the role that may answer (``approve`` on ``approval:ROLE``);
* ``DEADLINE``: how long each role has, ``30s``, ``15m``, ``2h``, ``1d`` or combined
  (``1h30m``); ``-`` or left out for none;
* ``ESCALATION``: the roles the approval moves to, in order, when a deadline passes
  unanswered; after the last one it expires and the call is denied. It needs a deadline.

Rules are evaluated after the (cached) policy decision allowed a process's syscall, in the
order they were added; the first whose tenant, object, action and condition match applies.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from kernos.kernel.approvals import format_duration
from kernos.kernel.errors import InvalidInput
from kernos.kernel.syscalls import ApprovalRequirement
from kernos.policy.conditions import Condition, parse_condition
from kernos.policy.rules import ACTIONS, ANY, OBJECT_KINDS, ROLE_PREFIX

RULE_TYPE = "a"
"""The first field of an approval rule line."""

NO_DEADLINE = "-"
"""The deadline field of a rule without a deadline."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")  # tenants and roles (identity.py)
_OBJECT_NAME = re.compile(r"^[A-Za-z0-9._/@-]*\*?$")
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)([smhd]))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SYNTAX = "a, TENANT, OBJECT, ACTION, CONDITION, ROLE[, DEADLINE[, ESCALATION...]]"


def key_match(obj: str, pattern: str) -> bool:
    """Casbin's ``keyMatch``: ``pattern`` matches ``obj`` exactly, or up to its ``*``."""
    star = pattern.find("*")
    if star < 0:
        return obj == pattern
    return obj.startswith(pattern[:star])


def parse_duration(text: str) -> float:
    """``15m`` as 900.0 (units ``s``, ``m``, ``h``, ``d``, combinable: ``1h30m``)."""
    value = text.strip()
    if not _DURATION.match(value):
        raise InvalidInput(
            f"deadline {value!r} is not a duration: write e.g. 30s, 15m, 2h, 1d or 1h30m "
            f"('{NO_DEADLINE}' for none)"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    if seconds <= 0:
        raise InvalidInput(f"deadline {value!r} must be longer than zero")
    return seconds


def split_fields(text: str) -> list[str]:
    """Split a rule line at its commas, except those inside JSON strings and brackets."""
    fields: list[str] = []
    depth, start, quoted, escaped = 0, 0, False, False
    for index, char in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            fields.append(text[start:index].strip())
            start = index + 1
    fields.append(text[start:].strip())
    return fields


@dataclass(frozen=True, slots=True)
class ApprovalRule:
    """One validated approval rule in canonical form."""

    tenant: str
    obj: str
    action: str
    condition: Condition
    role: str
    deadline_seconds: float | None = None
    escalation: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The canonical line: ``a, city, tool:dispatch_trucks, call, hazard == true, ...``."""
        fields = [RULE_TYPE, self.tenant, self.obj, self.action, self.condition.text, self.role]
        if self.deadline_seconds is not None:
            fields.append(format_duration(self.deadline_seconds))
        fields.extend(self.escalation)
        return ", ".join(fields)

    def applies_to(self, tenant: str, obj: str, action: str) -> bool:
        """Whether the rule covers ``action`` on ``obj`` in ``tenant`` (before its condition)."""
        return (
            self.tenant in (ANY, tenant)
            and self.action in (ANY, action)
            and (self.obj == ANY or key_match(obj, self.obj))
        )

    @property
    def requirement(self) -> ApprovalRequirement:
        """What the kernel's approval stage is asked to do for a call this rule matches."""
        return ApprovalRequirement(
            role=self.role,
            deadline_seconds=self.deadline_seconds,
            escalation=self.escalation,
            rule=self.text,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "line": self.text,
            "tenant": self.tenant,
            "object": self.obj,
            "action": self.action,
            "condition": self.condition.text,
            "role": self.role,
            "deadline_seconds": self.deadline_seconds,
            "escalation": list(self.escalation),
        }

    def __str__(self) -> str:
        return self.text


def _role(value: str, line: str, roles: Collection[str] | None, *, what: str) -> str:
    name = value.removeprefix(ROLE_PREFIX)
    if not _NAME.match(name):
        raise InvalidInput(f"approval rule {line!r}: {what} {value!r} is not a role name")
    if roles is not None and name not in roles:
        raise InvalidInput(
            f"approval rule {line!r}: unknown role {name!r} ({what}); roles are "
            f"{', '.join(sorted(roles))}"
        )
    return name


def _object(value: str, line: str) -> str:
    if value == ANY:
        return value
    kind, sep, name = value.partition(":")
    if not sep or kind not in OBJECT_KINDS:
        raise InvalidInput(
            f"approval rule {line!r}: object {value!r} must be KIND:NAME with KIND one of "
            f"{', '.join(sorted(OBJECT_KINDS))} (e.g. tool:dispatch_*), or '*'"
        )
    if not name or not _OBJECT_NAME.match(name):
        raise InvalidInput(
            f"approval rule {line!r}: object name {name!r} may hold letters, digits, '.', '_', "
            "'/', '@', '-' and end in '*'"
        )
    return value


def parse_approval_rule(text: str, *, roles: Collection[str] | None = None) -> ApprovalRule:
    """Validate a rule line; ``InvalidInput`` says what is wrong.

    ``roles`` are the role names (bare) the policy defines; ``None`` skips that check (for
    rules already stored).
    """
    line = text.strip()
    if not line:
        raise InvalidInput(f"empty approval rule; write {_SYNTAX}")
    if "\n" in line:
        raise InvalidInput("an approval rule is one line")
    fields = split_fields(line)
    if fields[0] != RULE_TYPE:
        raise InvalidInput(f"approval rule {line!r}: must start with '{RULE_TYPE}, ' ({_SYNTAX})")
    if len(fields) < 6:
        raise InvalidInput(
            f"approval rule {line!r}: needs at least 6 fields ({_SYNTAX}), got {len(fields)}"
        )
    if any(not field for field in fields):
        raise InvalidInput(f"approval rule {line!r}: a field is empty")
    _, tenant, obj, action, condition, role, *rest = fields
    if tenant != ANY and not _NAME.match(tenant):
        raise InvalidInput(f"approval rule {line!r}: tenant {tenant!r} is not a tenant name or '*'")
    if action != ANY and action not in ACTIONS:
        raise InvalidInput(
            f"approval rule {line!r}: unknown action {action!r}; actions are "
            f"{', '.join(sorted(ACTIONS))} or '*'"
        )
    try:
        parsed = parse_condition(condition)
    except InvalidInput as exc:
        raise InvalidInput(f"approval rule {line!r}: {exc.message}") from None
    deadline: float | None = None
    if rest:
        if rest[0] != NO_DEADLINE:
            try:
                deadline = parse_duration(rest[0])
            except InvalidInput as exc:
                raise InvalidInput(f"approval rule {line!r}: {exc.message}") from None
        rest = rest[1:]
    if rest and deadline is None:
        raise InvalidInput(
            f"approval rule {line!r}: an escalation chain needs a deadline (how long each "
            "role has before the next one is asked)"
        )
    return ApprovalRule(
        tenant=tenant,
        obj=_object(obj, line),
        action=action,
        condition=parsed,
        role=_role(role, line, roles, what="role"),
        deadline_seconds=deadline,
        escalation=tuple(_role(r, line, roles, what="escalation role") for r in rest),
    )
