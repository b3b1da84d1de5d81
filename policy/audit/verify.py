"""Verify the audit log: every hash, every column against its hashed body, every checkpoint.

Streaming and chunked (keyset pages by ``seq``), on one read-only connection; the same code
serves the running kernel (``AuditLog.verify``, on a thread) and an auditor with only the
database (``verify_offline``). The first damage found is named by ``seq`` and kind:

* ``altered``: a body, hash or indexed column was changed (or a record has no hash at all);
* ``deleted``: a record is missing (a gap in ``seq``), or a checkpoint the witness names is;
* ``reordered``: a record sits at another record's ``seq`` (rows swapped or renumbered);
* ``truncated``: the log ends before the last record a checkpoint covers;
* ``rechained``: the chain is self-consistent but a signed root (in the database or the
  witness) disagrees, a checkpoint's signature does not verify, or it is signed by a key that
  is not trusted — history was rewritten and the hashes recomputed.

Within a checkpoint's range a re-chained edit can be placed only to the range (a root cannot
say which leaf changed): the first bad seq is then the range's first record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from sqlalchemy import String, Table, bindparam, create_engine, func, inspect, select, type_coerce
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from kernos.kernel.errors import InvalidInput, StorageUnavailable
from kernos.kernel.settings import shown_url
from kernos.kernel.storage.migrate import sync_url
from kernos.kernel.storage.models import AuditCheckpointRow, AuditRow
from kernos.policy.audit.canonical import COLUMNS, GENESIS, MerkleBuilder
from kernos.policy.audit.checkpoints import Checkpoint
from kernos.policy.audit.signed import Damage, DamageKind, ExpectedRange, plan

CHUNK = 5000
"""Records per page while verifying."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """What a verify found (``ok`` and nothing else set, or the first damage)."""

    ok: bool
    records: int
    """Records checked."""
    head_seq: int
    """The last record's seq when the verify started (0: empty log)."""
    checkpoints: int
    """Checkpoint ranges whose Merkle root was recomputed and matched."""
    witnessed: int
    """Witness entries compared."""
    trusted_key: bool
    """Whether checkpoint signatures were checked against a trusted key (the configured
    signing key, one given, or the witness's), not only each checkpoint's own."""
    first_bad_seq: int | None = None
    kind: DamageKind | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "records": self.records,
            "head_seq": self.head_seq,
            "checkpoints": self.checkpoints,
            "witnessed": self.witnessed,
            "trusted_key": self.trusted_key,
            "first_bad_seq": self.first_bad_seq,
            "kind": None if self.kind is None else self.kind.value,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerifyResult:
        """From ``as_dict`` output (the API's JSON)."""
        kind = data.get("kind")
        return cls(
            ok=bool(data["ok"]),
            records=int(data["records"]),
            head_seq=int(data["head_seq"]),
            checkpoints=int(data["checkpoints"]),
            witnessed=int(data["witnessed"]),
            trusted_key=bool(data["trusted_key"]),
            first_bad_seq=data.get("first_bad_seq"),
            kind=None if kind is None else DamageKind(kind),
            detail=str(data.get("detail") or ""),
        )

    def summary(self) -> str:
        """One line for people."""
        if self.ok:
            return (
                f"audit log intact: {self.records} records, {self.checkpoints} checkpoints "
                f"verified" + (f", {self.witnessed} witnessed" if self.witnessed else "")
            )
        return f"audit log damaged at seq {self.first_bad_seq}: {self.kind}: {self.detail}"


# (row index, name) of the columns compared by plain equality; ts and args need decoding.
_PLAIN = tuple(
    (index, name) for index, name in enumerate(COLUMNS, start=1) if name not in ("ts", "args")
)
_NOT_JSON = object()


def _same_ts(value: Any, hashed: Any) -> bool:
    """Whether the ``ts`` column (a datetime, or SQLite's text) is the body's ISO time."""
    if type(hashed) is not str or value is None:
        return False
    try:
        when = datetime.fromisoformat(value) if type(value) is str else value
        if when.tzinfo is None:  # SQLite keeps UTC without an offset
            when = when.replace(tzinfo=UTC)
        return bool(when == datetime.fromisoformat(hashed))
    except (TypeError, ValueError):
        return False


_sha256 = hashlib.sha256
_loads = json.JSONDecoder().decode


class ChainVerifier:
    """Checks record rows fed in ``seq`` order, from a known start (genesis by default).

    Rows are tuples ``(seq, *COLUMNS, hash, prev_hash, body)``; ``ts`` may come as the
    driver's text (SQLite) and ``args`` as JSON text, as ``_ROWS`` selects them (decoding
    them only to compare is cheaper than the ORM types' processing). With ``collect``,
    ``window`` accumulates the Merkle tree over every record fed (what a new checkpoint signs).
    """

    def __init__(
        self,
        *,
        ranges: Iterable[ExpectedRange] = (),
        seq: int = 0,
        prev_hash: str = GENESIS,
        collect: bool = False,
    ) -> None:
        self.seq = seq
        self.prev_hash = prev_hash
        self.records = 0
        self.matched = 0
        self.window = MerkleBuilder()
        self._collect = collect
        self._ranges = sorted((r for r in ranges if r.first > seq), key=lambda r: r.first)
        self._index = 0
        self._current: ExpectedRange | None = None
        self._tree: MerkleBuilder | None = None

    def feed(self, rows: Sequence[Sequence[Any]]) -> Damage | None:
        """Check the next rows; the first damage, or ``None`` if they are intact."""
        expect = self.seq + 1
        prev = self.prev_hash
        window = self.window if self._collect else None
        track = self._track if self._ranges else None
        for row in rows:
            seq = row[0]
            if seq != expect:
                missing = (
                    f"record {expect}" if seq == expect + 1 else f"records {expect}..{seq - 1}"
                )
                return self._stop(expect, DamageKind.DELETED, f"{missing} missing (next is {seq})")
            digest, prev_col, body = row[15], row[16], row[17]
            if digest is None or prev_col is None or body is None:
                return self._stop(
                    seq, DamageKind.ALTERED, "record has no hash: written outside the chain"
                )
            if _sha256((prev_col + body).encode()).hexdigest() != digest:
                return self._stop(
                    seq, DamageKind.ALTERED, "its body or hash was changed (hash mismatch)"
                )
            try:
                doc = _loads(body)
            except ValueError:
                return self._stop(seq, DamageKind.ALTERED, "its body is not JSON")
            hashed_seq = doc.get("seq") if type(doc) is dict else None
            if type(hashed_seq) is not int:
                return self._stop(seq, DamageKind.ALTERED, "its body has no seq")
            if hashed_seq != seq:
                return self._stop(
                    seq,
                    DamageKind.REORDERED,
                    f"the record here was hashed as seq {hashed_seq} (rows swapped or renumbered)",
                )
            if prev_col != prev:
                return self._stop(
                    seq,
                    DamageKind.ALTERED,
                    "its prev_hash does not match the hash of the record before it",
                )
            if not _same_ts(row[1], doc.get("ts")):
                return self._stop(seq, DamageKind.ALTERED, "column ts differs from the hashed body")
            args = row[11]
            if type(args) is str:
                try:
                    args = _loads(args)
                except ValueError:
                    args = _NOT_JSON
            if args != doc.get("args"):
                return self._stop(
                    seq, DamageKind.ALTERED, "column args differs from the hashed body"
                )
            for index, name in _PLAIN:
                if row[index] != doc.get(name):
                    return self._stop(
                        seq, DamageKind.ALTERED, f"column {name} differs from the hashed body"
                    )
            prev = digest
            expect = seq + 1
            self.seq = seq
            self.prev_hash = prev
            self.records += 1
            if window is not None:
                window.add(digest)
            if track is not None:
                damage = track(seq, digest)
                if damage is not None:
                    return damage
        return None

    def _track(self, seq: int, digest: str) -> Damage | None:
        current = self._current
        if current is None:
            if self._index >= len(self._ranges) or self._ranges[self._index].first != seq:
                return None
            current = self._current = self._ranges[self._index]
            self._index += 1
            self._tree = MerkleBuilder()
        assert self._tree is not None
        self._tree.add(digest)
        if seq < current.last:
            return None
        self._current = None
        if self._tree.root() != current.root or digest != current.head_hash:
            return Damage(
                seq=current.first,
                kind=DamageKind.RECHAINED,
                detail=(
                    f"records {current.first}..{current.last} do not match the signed root "
                    f"of {current.label}: a record in that range was rewritten and the chain "
                    "recomputed"
                ),
            )
        self.matched += 1
        return None

    def _stop(self, seq: int, kind: DamageKind, detail: str) -> Damage:
        return Damage(seq=seq, kind=kind, detail=f"record {seq}: {detail}")

    def finish(self) -> Damage | None:
        """After the last row: a signed range that reaches past the end means truncation."""
        pending = [self._current] if self._current is not None else []
        pending += self._ranges[self._index :]
        beyond = [r for r in pending if r.last > self.seq]
        if not beyond:
            return None
        last = max(beyond, key=lambda r: r.last)
        return Damage(
            seq=self.seq + 1,
            kind=DamageKind.TRUNCATED,
            detail=(
                f"the log ends at seq {self.seq} but {last.label} covers records up to "
                f"{last.last}: records {self.seq + 1}..{last.last} were cut off"
            ),
        )


_AUDIT = cast(Table, AuditRow.__table__)
_CHECKPOINTS = cast(Table, AuditCheckpointRow.__table__)
_a = _AUDIT.c
_RAW = ("ts", "args")  # read without the ORM types' processing; ChainVerifier decodes them
_ROWS = (
    select(
        _a.seq,
        *(
            type_coerce(getattr(_a, name), String) if name in _RAW else getattr(_a, name)
            for name in COLUMNS
        ),
        _a.hash,
        _a.prev_hash,
        _a.body,
    )
    .where(_a.seq > bindparam("after"), _a.seq <= bindparam("upto"))
    .order_by(_a.seq)
    .limit(bindparam("chunk"))
)


def stored_checkpoints(conn: Connection) -> list[Checkpoint]:
    """Every checkpoint in the database, by id."""
    rows = conn.execute(select(_CHECKPOINTS).order_by(_CHECKPOINTS.c.id)).all()
    return [Checkpoint.from_row(row) for row in rows]


def head_seq(conn: Connection) -> int:
    """The last record's seq (0 for an empty log)."""
    return int(conn.execute(select(func.max(_a.seq))).scalar() or 0)


def walk(
    conn: Connection, verifier: ChainVerifier, *, upto: int, chunk: int = CHUNK
) -> Damage | None:
    """Feed the records after ``verifier.seq`` up to ``upto`` through ``verifier``."""
    while verifier.seq < upto:
        rows = conn.execute(_ROWS, {"after": verifier.seq, "upto": upto, "chunk": chunk}).all()
        if not rows:
            break
        damage = verifier.feed(rows)
        if damage is not None:
            return damage
    return verifier.finish()


def verify_connection(
    conn: Connection,
    *,
    witness: Sequence[Checkpoint] = (),
    trusted_keys: Iterable[str] = (),
    chunk: int = CHUNK,
) -> VerifyResult:
    """Verify the whole log through ``conn`` (records up to the head when it starts)."""
    stored = stored_checkpoints(conn)  # before the head: every checkpoint covers ≤ head
    upto = head_seq(conn)
    ranges, problems, trusted = plan(stored, witness, trusted_keys)
    verifier = ChainVerifier(ranges=ranges)
    damage = walk(conn, verifier, upto=upto, chunk=chunk)
    if damage is None and problems:
        damage = min(problems, key=lambda d: d.seq)
    if damage is not None:
        return VerifyResult(
            ok=False,
            records=verifier.records,
            head_seq=upto,
            checkpoints=verifier.matched,
            witnessed=len(witness),
            trusted_key=trusted,
            first_bad_seq=damage.seq,
            kind=damage.kind,
            detail=damage.detail,
        )
    detail = ""
    if not stored and not witness:
        detail = (
            "no checkpoints: a rewritten and re-chained log cannot be told from an intact "
            "one; sign one with `kernos audit checkpoint`"
        )
    elif not trusted:
        detail = "checkpoint signatures checked with their own keys only (no trusted key given)"
    return VerifyResult(
        ok=True,
        records=verifier.records,
        head_seq=upto,
        checkpoints=verifier.matched,
        witnessed=len(witness),
        trusted_key=trusted,
        detail=detail,
    )


def read_only_engine(database_url: str | URL) -> Engine:
    """A synchronous engine that cannot write: SQLite opened ``mode=ro``, PostgreSQL in
    read-only transactions. ``InvalidInput`` for a missing SQLite file."""
    url = make_url(database_url) if isinstance(database_url, str) else database_url
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = Path(url.database or "").expanduser().absolute()
        if not url.database or not path.is_file():
            raise InvalidInput(f"no SQLite database at {path}")
        ro = URL.create(
            "sqlite", database=f"file:{quote(str(path))}", query={"mode": "ro", "uri": "true"}
        )
        return create_engine(ro, hide_parameters=True)
    if backend == "postgresql":
        return create_engine(
            sync_url(url),
            hide_parameters=True,
            isolation_level="REPEATABLE READ",  # one snapshot for the whole walk
            connect_args={"options": "-c default_transaction_read_only=on"},
        )
    raise InvalidInput(f"unsupported database {backend!r}; use sqlite or postgresql")


def verify_url(
    database_url: str | URL,
    *,
    witness: Sequence[Checkpoint] = (),
    trusted_keys: Iterable[str] = (),
    chunk: int = CHUNK,
) -> VerifyResult:
    """Verify the log of the database at ``database_url`` read-only (blocking)."""
    engine = read_only_engine(database_url)
    shown = shown_url(engine.url)
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("audit_log")}
            if "hash" not in columns:
                raise InvalidInput(
                    f"database {shown} has no hash-chained audit log (its schema predates it); "
                    "start a kernel on it once to migrate"
                )
            return verify_connection(conn, witness=witness, trusted_keys=trusted_keys, chunk=chunk)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StorageUnavailable(f"cannot read database {shown}: {reason}") from exc
    finally:
        engine.dispose()


def verify_offline(
    database_url: str | URL,
    *,
    witness: Path | Sequence[Checkpoint] | None = None,
    public_key: str | Sequence[str] | None = None,
) -> VerifyResult:
    """Verify a database directly and read-only, without a kernel or its lease (an auditor's
    check). ``witness``: a witness file or its parsed checkpoints; ``public_key``: trusted
    key(s), 64 hex digits or PEM files."""
    from kernos.policy.audit.checkpoints import read_witness
    from kernos.policy.audit.signing import load_public_key

    entries: Sequence[Checkpoint] = ()
    if isinstance(witness, Path):
        entries = read_witness(witness)
    elif witness is not None:
        entries = witness
    keys: list[str] = []
    if public_key is not None:
        given = [public_key] if isinstance(public_key, str) else list(public_key)
        keys = [load_public_key(k) for k in given]
    return verify_url(database_url, witness=entries, trusted_keys=keys)
