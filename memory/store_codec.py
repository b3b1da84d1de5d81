"""How the LangGraph store's items live in Kernos memory: namespaces as collection names,
values as documents with metadata, LangGraph filters as metadata filters.

* A namespace ``("memories", "user-1")`` is the collection ``memories.user-1``: labels joined
  by ``.`` (LangGraph forbids ``.`` in a label, so the join is unambiguous). A label that is
  not plain (letters, digits, ``_`` and ``-``, starting and ending with a letter or digit, not
  starting with ``x--``) is written ``x--`` + the hex of its UTF-8 bytes (``"a b"`` →
  ``x--612062``), so every namespace
  maps to a valid collection name and back. The whole name must still be a valid collection
  name (3-512 characters): ``("ab",)`` is too short.
* A key is the document id (at most 256 characters).
* The document (what is embedded) is the text at the index fields (LangGraph's ``index``
  paths, default ``"$"``: the whole value as JSON), joined by newlines.
* The metadata keeps the value as JSON (``store:value``), the timestamps, whether the item is
  indexed, and a copy of each top-level scalar field as ``field:NAME``, which is what filters
  run on in the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from langgraph.store.base import Item, MatchCondition
from langgraph.store.base.embed import get_text_at_path, tokenize_path

from kernos.kernel.errors import InvalidInput
from kernos.kernel.memory_records import check_collection

VALUE = "store:value"
CREATED = "store:created_at"
UPDATED = "store:updated_at"
INDEXED = "store:indexed"
FIELD = "field:"
"""Prefix of the metadata copy of a value's top-level scalar field."""

_PLAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?$")
_ESCAPE = "x--"
_SCALAR = (str, int, float, bool)
_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})


# -- Namespaces ----------------------------------------------------------------------------


def encode_label(label: str) -> str:
    """A namespace label as it appears in a collection name."""
    if _PLAIN.match(label) and not label.startswith(_ESCAPE):
        return label
    return _ESCAPE + label.encode().hex()


def decode_label(part: str) -> str:
    """The label a part of a collection name stands for (a part that is not an encoded label,
    from a collection made outside the store, is taken as it is)."""
    if part.startswith(_ESCAPE):
        try:
            return bytes.fromhex(part[len(_ESCAPE) :]).decode()
        except ValueError:
            return part
    return part


def collection_of(namespace: Sequence[str]) -> str:
    """The collection holding ``namespace`` (``InvalidInput`` if it cannot be one)."""
    if not namespace or not all(isinstance(label, str) and label for label in namespace):
        raise InvalidInput(f"namespace {tuple(namespace)!r} needs one or more non-empty labels")
    return check_collection(".".join(encode_label(label) for label in namespace))


def namespace_of(collection: str) -> tuple[str, ...]:
    """The namespace a collection holds."""
    return tuple(decode_label(part) for part in collection.split("."))


def prefix_of(namespace_prefix: Sequence[str]) -> str:
    """The collection-name prefix every namespace under ``namespace_prefix`` starts with."""
    return ".".join(encode_label(label) for label in namespace_prefix)


def under(namespace: tuple[str, ...], prefix: Sequence[str]) -> bool:
    """Whether ``namespace`` is ``prefix`` or below it."""
    return namespace[: len(prefix)] == tuple(prefix)


def matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    """LangGraph's namespace match: a prefix or suffix, ``*`` matching any one label."""
    path = condition.path
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise InvalidInput(f"unsupported namespace match type {condition.match_type!r}")
    return all(p == "*" or n == p for n, p in pairs)


# -- Values --------------------------------------------------------------------------------


def document(value: Mapping[str, Any], fields: Sequence[str] | None) -> tuple[str, bool]:
    """The text to embed for ``value`` at ``fields`` (``None``: not indexed), and whether it
    is indexed. An item with nothing at its fields is stored unindexed, as its JSON."""
    whole = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if fields is None:
        return whole, False
    texts: list[str] = []
    for path in fields:
        texts.extend(get_text_at_path(value, "$" if path == "$" else tokenize_path(path)))
    text = "\n".join(t for t in texts if t.strip())
    return (text, True) if text else (whole, False)


def metadata(value: Mapping[str, Any], *, indexed: bool, now: datetime) -> dict[str, Any]:
    """The metadata an item is stored with."""
    try:
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"a store value must be JSON-serializable: {exc}") from None
    meta: dict[str, Any] = {
        VALUE: encoded,
        CREATED: now.isoformat(),
        UPDATED: now.isoformat(),
        INDEXED: indexed,
    }
    for name, field in value.items():
        if isinstance(name, str) and name and isinstance(field, _SCALAR):
            meta[FIELD + name] = field
    return meta


def item_fields(hit: Mapping[str, Any]) -> dict[str, Any]:
    """``namespace``-less keyword arguments of the ``Item`` a memory hit holds. A document
    written outside the store (through ``memory_put`` or the API) reads as
    ``{"text": ..., "metadata": {...}}``."""
    meta = dict(hit.get("metadata") or {})
    raw = meta.get(VALUE)
    if isinstance(raw, str):
        value = json.loads(raw)
    else:
        value = {"text": hit.get("text", ""), "metadata": meta}
    created = _time(meta.get(CREATED))
    updated = _time(meta.get(UPDATED)) or created
    epoch = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
    return {
        "key": str(hit["id"]),
        "value": value,
        "created_at": created or epoch,
        "updated_at": updated or epoch,
    }


def _time(raw: Any) -> datetime | None:
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def to_item(namespace: tuple[str, ...], hit: Mapping[str, Any]) -> Item:
    """The LangGraph ``Item`` a memory hit holds."""
    return Item(namespace=namespace, **item_fields(hit))


# -- Filters -------------------------------------------------------------------------------


def where_of(filter: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """The metadata filter for a LangGraph filter, and whether it is exact. Clauses on
    top-level scalar fields (equality, ``$eq``, and ``$gt``/``$gte``/``$lt``/``$lte`` on
    numbers) run in the memory store; others (nested values, lists, ``$ne``) are checked
    on what comes back (``passes``), and the filter is then not exact."""
    if not filter:
        return None, True
    clauses: list[dict[str, Any]] = []
    exact = True
    for name, wanted in filter.items():
        if isinstance(wanted, _SCALAR):
            clauses.append({FIELD + name: wanted})
        elif isinstance(wanted, Mapping) and wanted and set(wanted) <= _OPERATORS:
            for op, operand in wanted.items():
                numeric = isinstance(operand, int | float) and not isinstance(operand, bool)
                if op == "$eq" and isinstance(operand, _SCALAR):
                    clauses.append({FIELD + name: operand})
                elif op in ("$gt", "$gte", "$lt", "$lte") and numeric:
                    clauses.append({FIELD + name: {op: operand}})
                else:
                    exact = False
        else:
            exact = False
    if not clauses:
        return None, exact
    return (clauses[0] if len(clauses) == 1 else {"$and": clauses}), exact


def passes(value: Any, filter: Mapping[str, Any] | None) -> bool:
    """Whether ``value`` passes a LangGraph filter (the semantics of LangGraph's own stores)."""
    if not filter:
        return True
    if not isinstance(value, Mapping):
        return False
    return all(_compare(value.get(name), wanted) for name, wanted in filter.items())


def _compare(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, Mapping):
        if any(str(k).startswith("$") for k in wanted):
            return all(_operator(value, op, operand) for op, operand in wanted.items())
        return isinstance(value, Mapping) and all(
            _compare(value.get(k), v) for k, v in wanted.items()
        )
    if isinstance(wanted, list | tuple):
        return (
            isinstance(value, list | tuple)
            and len(value) == len(wanted)
            and all(_compare(a, b) for a, b in zip(value, wanted, strict=True))
        )
    return bool(value == wanted)


def _operator(value: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(value == operand)
    if op == "$ne":
        return bool(value != operand)
    if op not in _OPERATORS:
        raise InvalidInput(f"unsupported filter operator {op!r}")
    try:
        left, right = float(value), float(operand)
    except (TypeError, ValueError):
        return False
    return {"$gt": left > right, "$gte": left >= right, "$lt": left < right}.get(op, left <= right)
