"""Argument conditions of approval rules: parsed once into a small, safe evaluator.

A condition is ``*`` (always) or clauses ``ARG OP VALUE`` joined by ``and``:

* ``ARG`` is a dotted path into the call's arguments (``hazard``, ``load.tons``, ``stops.0``;
  a number indexes a list);
* ``OP`` is one of ``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=`` ``in``;
* ``VALUE`` is a JSON literal (``true``, ``3.5``, ``"north"``, ``null``, ``["a", "b"]``);
  ``in`` takes a list.

Values compare as JSON: ``true`` equals only ``true`` (never ``1``), numbers compare as
numbers, strings as strings; an ordering between different kinds, or an argument that is not
there, makes the clause false. Nothing is ever ``eval``-ed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kernos.kernel.errors import InvalidInput

ALWAYS = "*"
"""The condition that always holds."""

OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "in")
"""Comparison operators, longest first (the order the parser tries them)."""

_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+))*")
_OPERATOR = re.compile(r"==|!=|<=|>=|<|>|in(?=[\s\[\"])")
_AND = re.compile(r"and(?=\s)")
_DECODER = json.JSONDecoder()
_MISSING = object()


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _lookup(args: Any, path: tuple[str, ...]) -> Any:
    value = args
    for part in path:
        if isinstance(value, dict):
            if part not in value:
                return _MISSING
            value = value[part]
        elif isinstance(value, list) and part.isdigit():
            index = int(part)
            if index >= len(value):
                return _MISSING
            value = value[index]
        else:
            return _MISSING
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "other"


def json_equal(left: Any, right: Any) -> bool:
    """Equality of JSON values (``true`` is not ``1``; ``1`` is ``1.0``)."""
    kind = _kind(left)
    if kind != _kind(right) or kind == "other":
        return False
    if kind == "list":
        return len(left) == len(right) and all(
            json_equal(a, b) for a, b in zip(left, right, strict=True)
        )
    if kind == "object":
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    return bool(left == right)


def _ordered(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(left: Any, right: Any) -> bool:
        kind = _kind(left)
        return kind in ("number", "string") and kind == _kind(right) and test(left, right)

    return compare


_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "==": json_equal,
    "!=": lambda a, b: not json_equal(a, b),
    "<": _ordered(lambda a, b: a < b),
    "<=": _ordered(lambda a, b: a <= b),
    ">": _ordered(lambda a, b: a > b),
    ">=": _ordered(lambda a, b: a >= b),
    "in": lambda a, b: any(json_equal(a, item) for item in b),
}


@dataclass(frozen=True, slots=True)
class Clause:
    """``ARG OP VALUE``."""

    path: tuple[str, ...]
    op: str
    value: Any

    @property
    def text(self) -> str:
        """Canonical form: ``hazard == true``."""
        return f"{'.'.join(self.path)} {self.op} {json.dumps(self.value, ensure_ascii=False)}"

    def holds(self, args: Any) -> bool:
        """Whether the clause holds for ``args`` (false when the argument is not there)."""
        found = _lookup(args, self.path)
        if found is _MISSING:
            return False
        return _TESTS[self.op](found, self.value)


@dataclass(frozen=True, slots=True)
class Condition:
    """Clauses that must all hold; none means always."""

    clauses: tuple[Clause, ...] = ()

    @property
    def text(self) -> str:
        """Canonical form: ``*`` or ``a == 1 and b in ["x", "y"]``."""
        return " and ".join(c.text for c in self.clauses) if self.clauses else ALWAYS

    @property
    def always(self) -> bool:
        """Whether the condition holds for any arguments."""
        return not self.clauses

    def holds(self, args: Any) -> bool:
        """Whether every clause holds for ``args``."""
        # A loop, not all(<generator>): this runs for every call a rule covers.
        for clause in self.clauses:  # noqa: SIM110
            if not clause.holds(args):
                return False
        return True

    def __str__(self) -> str:
        return self.text


def parse_condition(text: str) -> Condition:
    """Parse a condition; ``InvalidInput`` says what is wrong and where."""
    source = text.strip()
    if not source:
        raise InvalidInput("empty condition; write '*' or ARG OP VALUE, e.g. 'hazard == true'")
    if source == ALWAYS:
        return Condition()
    clauses: list[Clause] = []
    at = 0
    while True:
        path_match = _PATH.match(source, at)
        if path_match is None:
            raise InvalidInput(
                f"condition {source!r}: expected an argument name at {source[at:]!r} "
                "(a dotted path like 'hazard' or 'load.tons')"
            )
        at = _skip(source, path_match.end())
        op_match = _OPERATOR.match(source, at)
        if op_match is None:
            raise InvalidInput(
                f"condition {source!r}: expected an operator after {path_match.group()!r}; "
                f"operators are {' '.join(OPERATORS)}"
            )
        at = _skip(source, op_match.end())
        try:
            value, end = _DECODER.raw_decode(source, at)
        except json.JSONDecodeError:
            raise InvalidInput(
                f"condition {source!r}: {source[at:]!r} does not start with a JSON value "
                '(true, false, null, a number, "a string" or a [list])'
            ) from None
        op = op_match.group()
        if op == "in" and not isinstance(value, list):
            raise InvalidInput(f'condition {source!r}: \'in\' needs a JSON list, e.g. ["a", "b"]')
        if op in ("<", "<=", ">", ">=") and _kind(value) not in ("number", "string"):
            raise InvalidInput(
                f"condition {source!r}: {op} compares numbers or strings, not {json.dumps(value)}"
            )
        clauses.append(Clause(tuple(path_match.group().split(".")), op, value))
        at = _skip(source, end)
        if at == len(source):
            return Condition(tuple(clauses))
        and_match = _AND.match(source, at)
        if and_match is None:
            raise InvalidInput(
                f"condition {source!r}: expected 'and' or the end at {source[at:]!r}"
            )
        at = _skip(source, and_match.end())
