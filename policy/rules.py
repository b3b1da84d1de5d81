"""Policy lines: their grammar, validation and canonical form.

A line is ``p, SUBJECT, TENANT, OBJECT, ACTION, EFFECT`` (a rule) or ``g, MEMBER, ROLE, TENANT``
(a role assignment), as in ``policy/default_policy.csv``. Validation happens here, before a
line reaches Casbin or the database, so a bad line is refused with a message that says what is
wrong instead of failing later inside an ``enforce`` call.

Roles are stored as subjects ``role:NAME``: Casbin links every name to itself, so a principal
that happened to be named like a bare role (``viewer``) would otherwise hold that role's rules
without any ``g`` line. A bare role name is accepted where it can only mean the role (the
role of a ``g`` line, the subject of a ``p`` line naming a known role) and canonicalized.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from kernos.kernel.errors import InvalidInput

MODEL_PATH = Path(str(files("kernos.policy").joinpath("model.conf")))
"""The Casbin model (RBAC with domains, allow and deny rules)."""

DEFAULT_POLICY_PATH = Path(str(files("kernos.policy").joinpath("default_policy.csv")))
"""The commented default policy seeded into an empty database."""

BUILTIN_ROLES = frozenset({"admin", "operator", "inspector", "viewer"})
"""Roles every policy knows (their rules come from the default policy)."""

ACTIONS = frozenset({"call", "read", "write", "spawn", "signal", "approve", "admin"})
"""What a subject may do to an object."""

OBJECT_KINDS = frozenset(
    {
        "tool",
        "model",
        "memory",
        "agent",
        "process",
        "approval",
        "audit",
        "event",
        "policy",
        "key",
        "metrics",
        "retention",
    }
)
"""The ``KIND`` of an object ``KIND:NAME``."""

EFFECTS = frozenset({"allow", "deny"})
ANY = "*"
ROLE_PREFIX = "role:"
AGENT_PREFIX = "agent:"

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")  # tenants and principals (identity.py)
_AGENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_OBJECT_NAME = re.compile(r"^[A-Za-z0-9._/@-]*\*?$")


@dataclass(frozen=True, slots=True)
class PolicyLine:
    """One validated, canonical policy line: ``ptype`` (``p`` or ``g``) and its fields."""

    ptype: str
    fields: tuple[str, ...]

    @property
    def text(self) -> str:
        """The line as written in the policy file: ``p, role:operator, *, tool:*, call, allow``."""
        return ", ".join((self.ptype, *self.fields))

    @property
    def tenant(self) -> str:
        """The tenant the line applies in (``*``: every tenant)."""
        return self.fields[1] if self.ptype == "p" else self.fields[2]

    @property
    def subject(self) -> str:
        """The rule's subject, or the member of a role assignment."""
        return self.fields[0]

    def __str__(self) -> str:
        return self.text


def role_subject(role: str) -> str:
    """``operator`` or ``role:operator`` as the subject ``role:operator``."""
    return role if role.startswith(ROLE_PREFIX) else ROLE_PREFIX + role


def role_name(subject: str) -> str:
    """``role:operator`` as ``operator``."""
    return subject.removeprefix(ROLE_PREFIX)


def _split(text: str) -> list[str]:
    stripped = text.strip()
    if not stripped:
        raise InvalidInput("empty policy line; write 'p, SUBJECT, TENANT, OBJECT, ACTION, EFFECT'")
    for bad in ("\n", '"', "(", ")", "[", "]", "#"):
        if bad in stripped:
            raise InvalidInput(f"policy line {stripped!r}: {bad!r} is not allowed in a line")
    return [part.strip() for part in stripped.split(",")]


def _tenant(value: str, line: str) -> str:
    if value != ANY and not _NAME.match(value):
        raise InvalidInput(
            f"policy line {line!r}: tenant {value!r} is not a tenant name (lowercase letters, "
            "digits, '.', '_', '-') or '*' for every tenant"
        )
    return value


def _subject(value: str, line: str, *, roles: Collection[str], what: str) -> str:
    if value.startswith(ROLE_PREFIX):
        name = role_name(value)
        if not _NAME.match(name):
            raise InvalidInput(f"policy line {line!r}: {value!r} is not a valid role name")
        return value
    if value.startswith(AGENT_PREFIX):
        if not _AGENT.match(value.removeprefix(AGENT_PREFIX)):
            raise InvalidInput(f"policy line {line!r}: {value!r} is not a valid agent subject")
        return value
    if value in roles:
        return role_subject(value)  # a known role where a role is meant (see module docstring)
    if not _NAME.match(value):
        raise InvalidInput(
            f"policy line {line!r}: {what} {value!r} is not a principal name, agent:NAME or "
            "role:NAME"
        )
    return value


def _object(value: str, line: str) -> str:
    if value == ANY:
        return value
    kind, sep, name = value.partition(":")
    if not sep:
        raise InvalidInput(
            f"policy line {line!r}: object {value!r} must be KIND:NAME (e.g. tool:route) or '*'"
        )
    if kind not in OBJECT_KINDS:
        raise InvalidInput(
            f"policy line {line!r}: unknown object kind {kind!r}; "
            f"kinds are {', '.join(sorted(OBJECT_KINDS))}"
        )
    if not name or not _OBJECT_NAME.match(name):
        raise InvalidInput(
            f"policy line {line!r}: object name {name!r} may hold letters, digits, '.', '_', "
            "'/', '@', '-' and end in '*'"
        )
    return value


def _action(value: str, line: str) -> str:
    if value != ANY and value not in ACTIONS:
        raise InvalidInput(
            f"policy line {line!r}: unknown action {value!r}; "
            f"actions are {', '.join(sorted(ACTIONS))} or '*'"
        )
    return value


def parse_line(text: str, *, roles: Collection[str] = BUILTIN_ROLES) -> PolicyLine:
    """Validate ``text`` and return its canonical line; ``InvalidInput`` says what is wrong.

    ``roles`` are the role names known so far (bare names): a ``p`` subject naming one means
    the role. Whether a ``g`` line's role exists is checked by ``check_roles``.
    """
    parts = _split(text)
    line = text.strip()
    ptype, rest = parts[0], parts[1:]
    if any(not part for part in rest):
        raise InvalidInput(f"policy line {line!r}: a field is empty")
    if ptype == "p":
        if len(rest) == 4:
            rest = [*rest, "allow"]
        if len(rest) != 5:
            raise InvalidInput(
                f"policy line {line!r}: a rule has 5 fields after 'p' "
                f"(SUBJECT, TENANT, OBJECT, ACTION, EFFECT), got {len(rest)}"
            )
        subject, tenant, obj, action, effect = rest
        if effect not in EFFECTS:
            raise InvalidInput(f"policy line {line!r}: effect {effect!r} must be allow or deny")
        fields = (
            _subject(subject, line, roles=roles, what="subject"),
            _tenant(tenant, line),
            _object(obj, line),
            _action(action, line),
            effect,
        )
        return PolicyLine("p", fields)
    if ptype == "g":
        if len(rest) != 3:
            raise InvalidInput(
                f"policy line {line!r}: a role assignment has 3 fields after 'g' "
                f"(MEMBER, ROLE, TENANT), got {len(rest)}"
            )
        member, role, tenant = rest
        if member.startswith(ROLE_PREFIX):
            raise InvalidInput(
                f"policy line {line!r}: roles do not inherit from roles here; give "
                f"{member} its own rules instead"
            )
        member = _subject(member, line, roles=(), what="member")
        if role.startswith(AGENT_PREFIX) or role == ANY:
            raise InvalidInput(f"policy line {line!r}: {role!r} is not a role")
        role = role_subject(role)
        if not _NAME.match(role_name(role)):
            raise InvalidInput(f"policy line {line!r}: {role!r} is not a valid role name")
        return PolicyLine("g", (member, role, _tenant(tenant, line)))
    raise InvalidInput(
        f"policy line {line!r}: must start with 'p' (a rule) or 'g' (a role assignment), "
        f"not {ptype!r}"
    )


def defined_roles(lines: Iterable[PolicyLine]) -> frozenset[str]:
    """Role names (bare) known in ``lines``: the built-in ones and every ``role:`` rule subject."""
    return BUILTIN_ROLES | {
        role_name(ln.fields[0])
        for ln in lines
        if ln.ptype == "p" and ln.fields[0].startswith(ROLE_PREFIX)
    }


def check_roles(line: PolicyLine, roles: Collection[str]) -> None:
    """Refuse a ``g`` line whose role is not defined (``roles``: bare names)."""
    if line.ptype != "g":
        return
    role = role_name(line.fields[1])
    if role not in roles:
        raise InvalidInput(
            f"policy line {line.text!r}: unknown role {role!r}; roles are "
            f"{', '.join(sorted(roles))} (define a new one with rules for role:{role} first)"
        )


def parse_policy_text(text: str, *, source: str) -> list[PolicyLine]:
    """Every line of a policy file (``#`` comments and blank lines skipped), validated.

    ``InvalidInput`` names the file and line number of the first bad line, including a role
    assignment to a role the file does not define. A rule for ``role:NAME`` anywhere in the
    file defines ``NAME`` for every line of it.
    """
    numbered = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), start=1)]
    numbered = [(n, ln) for n, ln in numbered if ln and not ln.startswith("#")]
    roles: Collection[str] = BUILTIN_ROLES
    for _ in range(2):  # the second pass knows every role the file defines
        parsed: list[PolicyLine] = []
        for number, ln in numbered:
            try:
                parsed.append(parse_line(ln, roles=roles))
            except InvalidInput as exc:
                raise InvalidInput(f"{source}, line {number}: {exc.message}") from None
        roles = defined_roles(parsed)
    for (number, _), line in zip(numbered, parsed, strict=True):
        try:
            check_roles(line, roles)
        except InvalidInput as exc:
            raise InvalidInput(f"{source}, line {number}: {exc.message}") from None
    return parsed


def validate_request(obj: str, action: str) -> None:
    """Refuse a request for an unknown action or object kind (``InvalidInput``)."""
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {action!r}; actions are {', '.join(sorted(ACTIONS))}")
    kind = obj.partition(":")[0]
    if kind not in OBJECT_KINDS:
        raise InvalidInput(
            f"unknown object {obj!r}; objects are KIND:NAME with KIND one of "
            f"{', '.join(sorted(OBJECT_KINDS))}"
        )
