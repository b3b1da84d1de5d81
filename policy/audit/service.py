"""``AuditLog``: tail, checkpoint and verify the audit log of a running kernel.

The API's audit routes use it. Verify and checkpoint read on their own read-only connection
on a thread (the event loop stays free; the log is append-only, so reading up to the head
seen at the start is a consistent view); the checkpoint row is written through the kernel's
single writer, refusing to sign if another checkpoint was made in between.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kernos.kernel.clock import Clock
from kernos.kernel.errors import CheckFailed, ConfigError, Conflict
from kernos.kernel.settings import Settings
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import AuditCheckpointRow
from kernos.policy.audit import query
from kernos.policy.audit.canonical import GENESIS, iso_utc
from kernos.policy.audit.checkpoints import Checkpoint, export
from kernos.policy.audit.signing import fingerprint, load_signing_key, public_hex, sign
from kernos.policy.audit.verify import (
    ChainVerifier,
    VerifyResult,
    head_seq,
    read_only_engine,
    stored_checkpoints,
    verify_url,
    walk,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kernos.kernel.kernel import Kernel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointResult:
    """A new checkpoint (``created``), or the latest one when no record came since."""

    created: bool
    checkpoint: Checkpoint | None
    witness: str | None = None
    """Where the checkpoint was exported (``None``: no witness configured)."""
    witness_error: str | None = None
    """Why the export failed; the checkpoint is stored and signed all the same."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "created": self.created,
            "checkpoint": None if self.checkpoint is None else self.checkpoint.entry(),
            "witness": self.witness,
            "witness_error": self.witness_error,
        }


@dataclass(frozen=True, slots=True)
class _Range:
    last: Checkpoint | None
    upto: int
    root: str
    head_hash: str


class AuditLog:
    """The audit log of one kernel's database."""

    def __init__(self, db: Database, clock: Clock, settings: Settings) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self._lock = asyncio.Lock()

    @classmethod
    def for_kernel(cls, kernel: Kernel) -> AuditLog:
        """The audit log of ``kernel``."""
        return cls(kernel.db, kernel.clock, kernel.settings)

    async def records(
        self,
        *,
        tenant: str | None = None,
        pid: int | None = None,
        event: str | None = None,
        after: int | None = None,
        limit: int = 100,
        with_body: bool = False,
    ) -> list[dict[str, Any]]:
        """See ``query.records``."""
        async with self._db.read() as session:
            return await query.records(
                session,
                tenant=tenant,
                pid=pid,
                event=event,
                after=after,
                limit=limit,
                with_body=with_body,
            )

    def trusted_keys(self) -> list[str]:
        """The configured signing key's public key, if one is configured and readable."""
        if self._settings.audit_signing_key is None:
            return []
        try:
            return [public_hex(self._signing_key())]
        except ConfigError as exc:
            log.warning("verifying without a trusted key: %s", exc)
            return []

    async def verify(self, *, witness: Sequence[Checkpoint] = ()) -> VerifyResult:
        """Verify the whole log (and against ``witness`` entries, if given)."""
        keys = self.trusted_keys()
        return await asyncio.to_thread(verify_url, self._db.url, witness=witness, trusted_keys=keys)

    def _signing_key(self) -> Ed25519PrivateKey:
        path = self._settings.audit_signing_key
        if path is None:
            raise ConfigError(
                "no audit signing key is configured: create one outside KERNOS_HOME with "
                "`kernos audit keygen --out PATH` and set KERNOS_AUDIT_SIGNING_KEY to it"
            )
        return load_signing_key(path, home=self._settings.home)

    async def checkpoint(self) -> CheckpointResult:
        """Sign the Merkle root over the records since the last checkpoint, store it, and
        export it to the witness. ``CheckFailed`` if those records do not verify (a damaged
        range is never signed); ``ConfigError`` without a signing key."""
        key = self._signing_key()
        async with self._lock:
            prepared = await asyncio.to_thread(self._prepare)
            if isinstance(prepared, Checkpoint) or prepared is None:
                return CheckpointResult(created=False, checkpoint=prepared)
            checkpoint = self._sign(key, prepared)
            await self._db.write(self._store_job(checkpoint, prepared.last))
        log.info(
            "audit checkpoint %d signed (records %d..%d)",
            checkpoint.id,
            checkpoint.first_seq,
            checkpoint.last_seq,
        )
        witness = self._settings.audit_witness
        if witness is None:
            return CheckpointResult(created=True, checkpoint=checkpoint)
        shown = witness.split("?", 1)[0]
        try:
            await export(checkpoint, witness)
        except (OSError, httpx.HTTPError) as exc:
            log.error("audit checkpoint %d not exported to %s: %s", checkpoint.id, shown, exc)
            return CheckpointResult(
                created=True, checkpoint=checkpoint, witness=shown, witness_error=str(exc)
            )
        return CheckpointResult(created=True, checkpoint=checkpoint, witness=shown)

    def _prepare(self) -> _Range | Checkpoint | None:
        engine = read_only_engine(self._db.url)
        try:
            with engine.connect() as conn:
                stored = stored_checkpoints(conn)
                last = stored[-1] if stored else None
                upto = head_seq(conn)
                if upto <= (last.last_seq if last else 0):
                    return last
                if last is not None and not last.signature_ok():
                    raise CheckFailed(
                        f"not signing: the last checkpoint ({last.id}) does not verify; "
                        "run `kernos audit verify`"
                    )
                verifier = ChainVerifier(
                    seq=last.last_seq if last else 0,
                    prev_hash=last.head_hash if last else GENESIS,
                    collect=True,
                )
                damage = walk(conn, verifier, upto=upto)
        finally:
            engine.dispose()
        if damage is not None:
            raise CheckFailed(
                f"not signing a damaged log: seq {damage.seq}: {damage.kind}: {damage.detail}"
            )
        return _Range(
            last=last, upto=upto, root=verifier.window.root(), head_hash=verifier.prev_hash
        )

    def _sign(self, key: Ed25519PrivateKey, prepared: _Range) -> Checkpoint:
        last = prepared.last
        public = public_hex(key)
        unsigned = Checkpoint(
            id=1 if last is None else last.id + 1,
            prev_id=None if last is None else last.id,
            first_seq=1 if last is None else last.last_seq + 1,
            last_seq=prepared.upto,
            root=prepared.root,
            head_hash=prepared.head_hash,
            created_at=iso_utc(self._clock.now()),
            key_fingerprint=fingerprint(public),
            public_key=public,
            signature="",
        )
        return dataclasses.replace(unsigned, signature=sign(key, unsigned.message()))

    def _store_job(self, checkpoint: Checkpoint, last: Checkpoint | None) -> Any:
        from datetime import datetime

        expected = None if last is None else last.id

        def job(session: Session) -> None:
            latest = session.scalar(select(func.max(AuditCheckpointRow.id)))
            if latest != expected:
                raise Conflict("another audit checkpoint was made meanwhile; run it again")
            session.add(
                AuditCheckpointRow(
                    id=checkpoint.id,
                    prev_id=checkpoint.prev_id,
                    first_seq=checkpoint.first_seq,
                    last_seq=checkpoint.last_seq,
                    root=checkpoint.root,
                    head_hash=checkpoint.head_hash,
                    created_at=datetime.fromisoformat(checkpoint.created_at),
                    key_fingerprint=checkpoint.key_fingerprint,
                    public_key=checkpoint.public_key,
                    signature=checkpoint.signature,
                )
            )

        return job
