"""Signed checkpoints and their witnesses.

A checkpoint signs the Merkle root over one range of records. Its **witness entry** — one
JSON line, also the ``kernos audit checkpoint --json`` output — is exported to a place the
database's writers cannot reach (a file elsewhere, a webhook, or stdout for an operator to
keep); ``verify --witness`` compares the log against those entries.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from kernos.kernel.errors import InvalidInput
from kernos.kernel.storage.models import AuditCheckpointRow
from kernos.policy.audit.canonical import iso_utc
from kernos.policy.audit.signing import fingerprint, signature_valid

ENTRY_TYPE = "kernos.audit.checkpoint"
"""``type`` of a witness entry."""

WEBHOOK_TIMEOUT = 10.0
"""Seconds a witness webhook may take to accept a checkpoint."""

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """One signed checkpoint: records ``first_seq``..``last_seq`` and their Merkle root."""

    id: int
    prev_id: int | None
    first_seq: int
    last_seq: int
    root: str
    head_hash: str
    created_at: str
    key_fingerprint: str
    public_key: str
    signature: str

    def message(self) -> bytes:
        """The bytes the signature covers: canonical JSON of every field but the signature
        and the public key (named by its fingerprint)."""
        return _encode(
            {
                "type": ENTRY_TYPE,
                "v": 1,
                "id": self.id,
                "prev_id": self.prev_id,
                "first_seq": self.first_seq,
                "last_seq": self.last_seq,
                "root": self.root,
                "head_hash": self.head_hash,
                "created_at": self.created_at,
                "key_fingerprint": self.key_fingerprint,
            }
        ).encode()

    def signature_ok(self) -> bool:
        """Whether the signature verifies under the checkpoint's own key, and names it."""
        return fingerprint(self.public_key) == self.key_fingerprint and signature_valid(
            self.public_key, self.message(), self.signature
        )

    def entry(self) -> dict[str, Any]:
        """The witness entry (JSON-ready)."""
        return {"type": ENTRY_TYPE, "v": 1, **asdict(self)}

    def line(self) -> str:
        """The witness entry as one JSON line (no newline)."""
        return _encode(self.entry())

    @classmethod
    def from_row(cls, row: AuditCheckpointRow | Any) -> Checkpoint:
        """From its database row (ORM object or Core row)."""
        return cls(
            id=row.id,
            prev_id=row.prev_id,
            first_seq=row.first_seq,
            last_seq=row.last_seq,
            root=row.root,
            head_hash=row.head_hash,
            created_at=iso_utc(row.created_at),
            key_fingerprint=row.key_fingerprint,
            public_key=row.public_key,
            signature=row.signature,
        )

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], *, where: str) -> Checkpoint:
        """From a witness entry; ``InvalidInput`` naming ``where`` if it is not one."""
        if entry.get("type") != ENTRY_TYPE:
            raise InvalidInput(f"{where}: not a Kernos audit checkpoint (type {ENTRY_TYPE!r})")
        try:
            return cls(
                id=int(entry["id"]),
                prev_id=None if entry.get("prev_id") is None else int(entry["prev_id"]),
                first_seq=int(entry["first_seq"]),
                last_seq=int(entry["last_seq"]),
                root=str(entry["root"]),
                head_hash=str(entry["head_hash"]),
                created_at=str(entry["created_at"]),
                key_fingerprint=str(entry["key_fingerprint"]),
                public_key=str(entry["public_key"]),
                signature=str(entry["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{where}: incomplete checkpoint entry ({exc})") from None

    def same_as(self, other: Checkpoint) -> bool:
        """Whether both describe the same signed checkpoint."""
        return self.message() == other.message() and self.signature == other.signature


def parse_witness(lines: Iterable[str], *, source: str) -> list[Checkpoint]:
    """The checkpoints in witness lines (blank lines skipped); ``InvalidInput`` on a bad one.

    Every entry's signature must verify: a witness is trusted, so a line that does not verify
    means the witness itself is damaged or belongs to another log.
    """
    found: list[Checkpoint] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{source} line {number}"
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(entry, dict):
            raise InvalidInput(f"{where}: not a JSON object")
        checkpoint = Checkpoint.from_entry(entry, where=where)
        if not checkpoint.signature_ok():
            raise InvalidInput(f"{where}: checkpoint {checkpoint.id}'s signature does not verify")
        found.append(checkpoint)
    return found


def read_witness(path: Path) -> list[Checkpoint]:
    """The checkpoints in a witness file (JSON lines)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read witness {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"witness {path} is not UTF-8 text") from None
    return parse_witness(text.splitlines(), source=str(path))


def _append_line(witness: str, line: str) -> None:
    with Path(witness).expanduser().open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


async def export(checkpoint: Checkpoint, witness: str) -> None:
    """Send the checkpoint's entry to ``witness``: ``-`` (stdout), an http(s) URL (POST of the
    JSON entry) or a file path (one line appended, fsynced). Raises ``OSError`` or
    ``httpx.HTTPError`` when the witness does not take it."""
    if witness == "-":
        sys.stdout.write(checkpoint.line() + "\n")
        sys.stdout.flush()
    elif witness.startswith(("http://", "https://")):
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT) as client:
            response = await client.post(witness, json=checkpoint.entry())
            response.raise_for_status()
    else:
        await asyncio.to_thread(_append_line, witness, checkpoint.line())
