"""What the signed checkpoints say about the records, and the kinds of damage verify names.

``plan`` merges the checkpoints stored in the database with a witness's entries into the
signed ranges the records must reproduce, and reports problems with the checkpoints
themselves (a signature that does not verify, an untrusted key, one missing or changed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from kernos.kernel.errors import InvalidInput
from kernos.policy.audit.checkpoints import Checkpoint
from kernos.policy.audit.signing import fingerprint


class DamageKind(StrEnum):
    """What is wrong with the first bad record."""

    ALTERED = "altered"
    DELETED = "deleted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    RECHAINED = "rechained"


@dataclass(frozen=True, slots=True, kw_only=True)
class Damage:
    """The first problem found: where, what kind, and in words."""

    seq: int
    kind: DamageKind
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedRange:
    """A signed Merkle root the records ``first``..``last`` must reproduce."""

    first: int
    last: int
    root: str
    head_hash: str
    label: str


def plan(
    stored: Sequence[Checkpoint],
    witnessed: Sequence[Checkpoint],
    trusted_keys: Iterable[str] = (),
) -> tuple[list[ExpectedRange], list[Damage], bool]:
    """The signed ranges to check records against, problems with the checkpoints themselves,
    and whether a trusted key was available.

    Trusted keys are those given (the configured signing key's, ``--public-key``) and the
    witness's; a witness entry signed by another key than a given one is refused.
    """
    given = set(trusted_keys)
    for entry in witnessed:
        if given and entry.public_key not in given:
            raise InvalidInput(
                f"witness checkpoint {entry.id} is signed by key {entry.key_fingerprint[:16]}…, "
                "not by the key given to verify with"
            )
    trusted = given | {entry.public_key for entry in witnessed}
    damages: list[Damage] = []
    ranges: dict[int, ExpectedRange] = {}
    prev_id: int | None = None
    next_first = 1
    for cp in sorted(stored, key=lambda c: c.id):
        label = f"checkpoint {cp.id}"
        if cp.prev_id != prev_id or cp.first_seq != next_first:
            damages.append(
                Damage(
                    seq=next_first,
                    kind=DamageKind.DELETED,
                    detail=f"checkpoints before {label} are missing from the database "
                    f"(it follows checkpoint {cp.prev_id} and starts at seq {cp.first_seq})",
                )
            )
        prev_id, next_first = cp.id, cp.last_seq + 1
        if not cp.signature_ok():
            damages.append(_bad_checkpoint(cp, "its signature does not verify (row edited)"))
        elif trusted and cp.public_key not in trusted:
            damages.append(
                _bad_checkpoint(
                    cp, f"it is signed by key {fingerprint(cp.public_key)[:16]}…, not a trusted key"
                )
            )
        else:
            ranges[cp.id] = ExpectedRange(
                first=cp.first_seq,
                last=cp.last_seq,
                root=cp.root,
                head_hash=cp.head_hash,
                label=label,
            )
    by_id = {cp.id: cp for cp in stored}
    for entry in witnessed:
        label = f"witnessed checkpoint {entry.id}"
        ranges[entry.id] = ExpectedRange(
            first=entry.first_seq,
            last=entry.last_seq,
            root=entry.root,
            head_hash=entry.head_hash,
            label=label,
        )
        row = by_id.get(entry.id)
        if row is None:
            damages.append(
                Damage(
                    seq=entry.first_seq,
                    kind=DamageKind.DELETED,
                    detail=f"{label} (records {entry.first_seq}..{entry.last_seq}) is missing "
                    "from the database",
                )
            )
        elif not row.same_as(entry):
            damages.append(_bad_checkpoint(row, "it differs from its witnessed copy"))
    chosen: list[ExpectedRange] = []
    for expected in sorted(ranges.values(), key=lambda r: (r.first, r.last)):
        if not chosen or expected.first > chosen[-1].last:
            chosen.append(expected)
    return chosen, damages, bool(trusted)


def _bad_checkpoint(cp: Checkpoint, why: str) -> Damage:
    return Damage(
        seq=cp.first_seq,
        kind=DamageKind.RECHAINED,
        detail=f"checkpoint {cp.id} (records {cp.first_seq}..{cp.last_seq}): {why}",
    )
