"""The audit record's canonical form, its chain hash, and Merkle roots over record hashes.

A record's **body** is its JSON with sorted keys, no spaces, UTF-8 (``ensure_ascii=False``):
every ``audit_log`` column but the hashes — ``args``, ``correlation_id``, ``decision``,
``event``, ``kind``, ``pid``, ``principal``, ``rule``, ``seq``, ``summary``, ``syscall_key``,
``target``, ``tenant``, ``trace_id``, ``ts`` (ISO-8601 in UTC with microseconds) — and ``v``,
the body format's version (1). Its **hash** is ``sha256(prev_hash + body)`` over the UTF-8
bytes, both hashes as 64 lowercase hex digits; the first record's ``prev_hash`` is 64 zeros.

Checkpoints sign the **Merkle root** of RFC 6962 (Certificate Transparency) over the raw
32-byte record hashes of their range: leaf ``sha256(0x00 || hash)``, node
``sha256(0x01 || left || right)``, the left subtree the largest power of two smaller than n.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
"""The ``prev_hash`` of the first record."""

BODY_VERSION = 1
"""``v`` in every body this code writes."""

COLUMNS = (
    "ts",
    "tenant",
    "principal",
    "pid",
    "syscall_key",
    "event",
    "kind",
    "target",
    "decision",
    "rule",
    "args",
    "summary",
    "trace_id",
    "correlation_id",
)
"""The ``audit_log`` columns a body holds besides ``seq`` (each checked on verify)."""

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_sha256 = hashlib.sha256


def iso_utc(ts: datetime) -> str:
    """``ts`` as the body writes it: ISO-8601, UTC, microseconds (``...T10:00:00.000000+00:00``)."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="microseconds")


def body_parts(values: Mapping[str, Any], iso_ts: str) -> tuple[str, str, str | None]:
    """The body's JSON before and after ``seq``, so the seq can be put in later cheaply, and
    the arguments' JSON on their own (``None`` for none).

    Serializing here (inside the write job that appends the record) makes a value that cannot
    be serialized fail that job alone, not the group commit that later assigns ``seq``. The
    arguments are serialized once: ``args`` sorts first, so the head is their JSON followed
    by the other keys' (each key sorted, as one ``sort_keys`` dump would be).
    """
    args = values.get("args")
    args_json = None if args is None else _encode(args)
    rest = _encode(
        {
            "correlation_id": values.get("correlation_id"),
            "decision": values.get("decision"),
            "event": values["event"],
            "kind": values.get("kind"),
            "pid": values.get("pid"),
            "principal": values["principal"],
            "rule": values.get("rule"),
        }
    )
    head = '{"args":' + ("null" if args_json is None else args_json) + "," + rest[1:]
    tail = _encode(
        {
            "summary": values.get("summary"),
            "syscall_key": values.get("syscall_key"),
            "target": values.get("target"),
            "tenant": values["tenant"],
            "trace_id": values.get("trace_id"),
            "ts": iso_ts,
            "v": BODY_VERSION,
        }
    )
    return head, tail, args_json


def join_body(head: str, seq: int, tail: str) -> str:
    """The canonical body from ``body_parts`` and the record's ``seq``."""
    return f'{head[:-1]},"seq":{seq},{tail[1:]}'


def canonical_body(values: Mapping[str, Any], *, seq: int, ts: datetime) -> str:
    """The canonical body of one record, in one piece (the reference ``join_body`` matches)."""
    full = {name: values.get(name) for name in COLUMNS}
    full.update(seq=seq, ts=iso_utc(ts), v=BODY_VERSION)
    return _encode(full)


def chain_hash(prev_hash: str, body: str) -> str:
    """``sha256(prev_hash || body)`` as lowercase hex."""
    return _sha256((prev_hash + body).encode()).hexdigest()


def _leaf(record_hash: str) -> bytes:
    return _sha256(b"\x00" + bytes.fromhex(record_hash)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


class MerkleBuilder:
    """An RFC 6962 Merkle tree hash built one leaf at a time, in O(log n) memory."""

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # perfect subtrees, sizes decreasing
        self.size = 0

    def add(self, record_hash: str) -> None:
        """Append the record hash (hex) as the next leaf."""
        size, node = 1, _leaf(record_hash)
        stack = self._stack
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            size, node = left_size + size, _node(left, node)
        stack.append((size, node))
        self.size += 1

    def root(self) -> str:
        """The tree hash of the leaves so far (hex); the hash of nothing for no leaves."""
        if not self._stack:
            return _sha256(b"").hexdigest()
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = _node(left, node)
        return node.hex()


def merkle_root(record_hashes: Iterable[str]) -> str:
    """The RFC 6962 Merkle tree hash over ``record_hashes`` (hex), in order."""
    builder = MerkleBuilder()
    for record_hash in record_hashes:
        builder.add(record_hash)
    return builder.root()
