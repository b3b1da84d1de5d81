"""Tampering with the audit log the way an attacker with database access but without the
signing key would, directly in the database; verify must name the first bad record and the
kind of damage (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from kernos.kernel.errors import CheckFailed, InvalidInput
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import Settings, load_settings
from kernos.kernel.storage import migrate
from kernos.kernel.syscalls import AuditRecord
from kernos.policy.audit import AuditLog, DamageKind, HashChainAuditSink, generate_key
from kernos.policy.audit.checkpoints import read_witness
from kernos.policy.audit.signing import load_public_key
from kernos.policy.audit.verify import verify_offline


@dataclass
class Log:
    settings: Settings
    witness: Path
    public_key: str

    def sql(self) -> Iterator[Connection]:
        engine = create_engine(migrate.sync_url(self.settings.db_url))
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            engine.dispose()

    def verify(self, *, witness: bool = False, trusted: bool = False):
        return verify_offline(
            self.settings.db_url,
            witness=self.witness if witness else None,
            public_key=self.public_key if trusted else None,
        )


async def append(kernel: Kernel, first: int, count: int) -> None:
    def job(session: Session) -> None:
        for pid in range(first, first + count):
            kernel.audit_sink.append(
                session,
                AuditRecord(
                    event="syscall.intent",
                    tenant="acme" if pid % 2 else "default",
                    principal="default/admin",
                    pid=pid,
                    kind="tool.call",
                    target="echo",
                    decision="allow",
                    rule="local-admin",
                    args={"x": pid, "note": "ünïcode"},
                    summary=f"call {pid}",
                ),
            )

    await kernel.db.write(job)


@pytest.fixture
async def log(
    kernos_home: Path, kernos_database_url: str | None, tmp_path: Path
) -> AsyncIterator[Log]:
    """65 records: checkpoint 1 over 1..40, checkpoint 2 over 41..60, 61..65 unsigned."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    key = secrets / "audit.pem"
    public = generate_key(key, home=kernos_home)
    witness = secrets / "witness.jsonl"
    overrides: dict[str, object] = {"audit_signing_key": key, "audit_witness": str(witness)}
    if kernos_database_url is not None:
        overrides["database_url"] = kernos_database_url
    settings = load_settings(home=kernos_home, **overrides)
    # The kernel's own defaults and this sink only: a known number of records (the policy
    # plugin would add its bootstrap records).
    kernel = Kernel(settings, plugins=PluginManager(entry_points=False, builtins=()))
    kernel.audit_sink = HashChainAuditSink(kernel.db, kernel.clock)
    await kernel.start()
    try:
        audit = AuditLog.for_kernel(kernel)
        await append(kernel, 1, 40)
        first = await audit.checkpoint()
        await append(kernel, 41, 20)
        second = await audit.checkpoint()
        await append(kernel, 61, 5)
        assert first.created and second.created and second.witness_error is None
        assert second.checkpoint is not None and second.checkpoint.first_seq == 41
        assert (await audit.checkpoint()).created  # 61..65 now signed too …
        assert not (await audit.checkpoint()).created  # … and nothing new after that
        result = await audit.verify(witness=read_witness(witness))
        assert result.ok and result.checkpoints == 3 and result.trusted_key, result
    finally:
        await kernel.stop()
    # The attacker's starting point: the last checkpoint (61..65) is not in the database,
    # so 61..65 are "unsigned" as far as the database alone can tell.
    lines = witness.read_text().splitlines()
    assert len(lines) == 3
    witness.write_text("\n".join(lines[:2]) + "\n")
    current = Log(settings=settings, witness=witness, public_key=public)
    for conn in current.sql():
        conn.execute(text("DELETE FROM audit_checkpoints WHERE id = 3"))
    yield current


def expect(result, seq: int, kind: DamageKind, *words: str) -> None:
    assert not result.ok, result
    assert (result.first_bad_seq, result.kind) == (seq, kind), result
    for word in words:
        assert word in result.detail, result.detail


def test_an_untouched_log_verifies(log: Log) -> None:
    for witness in (False, True):
        for trusted in (False, True):
            result = log.verify(witness=witness, trusted=trusted)
            assert result.ok and result.records == 65 and result.checkpoints == 2, result
            assert result.trusted_key == (witness or trusted)


def test_one_byte_of_a_body(log: Log) -> None:
    for conn in log.sql():
        conn.execute(
            text("UPDATE audit_log SET body = replace(body, 'call 10', 'call 1O') WHERE seq = 10")
        )
    expect(log.verify(), 10, DamageKind.ALTERED, "hash mismatch")


def test_an_indexed_column_only(log: Log) -> None:
    for conn in log.sql():
        conn.execute(text("UPDATE audit_log SET tenant = 'default' WHERE seq = 13"))
    expect(log.verify(), 13, DamageKind.ALTERED, "column tenant")
    for conn in log.sql():
        conn.execute(text("UPDATE audit_log SET tenant = 'acme', pid = 99 WHERE seq = 13"))
    expect(log.verify(), 13, DamageKind.ALTERED, "column pid")


def test_a_deleted_record(log: Log) -> None:
    for conn in log.sql():
        conn.execute(text("DELETE FROM audit_log WHERE seq = 15"))
    expect(log.verify(), 15, DamageKind.DELETED, "record 15 missing")


def test_two_swapped_records(log: Log) -> None:
    for conn in log.sql():
        conn.execute(text("UPDATE audit_log SET seq = -1 WHERE seq = 20"))
        conn.execute(text("UPDATE audit_log SET seq = 20 WHERE seq = 21"))
        conn.execute(text("UPDATE audit_log SET seq = 21 WHERE seq = -1"))
    expect(log.verify(), 20, DamageKind.REORDERED, "hashed as seq 21")


def test_a_truncated_tail(log: Log) -> None:
    for conn in log.sql():
        conn.execute(text("DELETE FROM audit_log WHERE seq > 50"))
    # With the checkpoint row still there, the database alone shows it …
    expect(log.verify(), 51, DamageKind.TRUNCATED, "up to 60")
    # … the attacker removes that too; the witness still has it.
    for conn in log.sql():
        conn.execute(text("DELETE FROM audit_checkpoints WHERE id = 2"))
    expect(log.verify(witness=True), 51, DamageKind.TRUNCATED, "witnessed checkpoint 2")


def rechain_from(conn: Connection, seq: int, *, summary: str) -> None:
    """The attacker edits one record and recomputes every body and hash after it."""
    rows = conn.execute(
        text("SELECT seq, prev_hash, body FROM audit_log WHERE seq >= :s ORDER BY seq"),
        {"s": seq},
    ).all()
    prev = rows[0].prev_hash
    for row in rows:
        body = json.loads(row.body)
        if row.seq == seq:
            body["summary"] = summary
        text_body = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256((prev + text_body).encode()).hexdigest()
        conn.execute(
            text(
                "UPDATE audit_log SET body = :b, hash = :h, prev_hash = :p, summary = :s "
                "WHERE seq = :seq"
            ),
            {"b": text_body, "h": digest, "p": prev, "s": body["summary"], "seq": row.seq},
        )
        prev = digest


def test_an_edit_with_the_chain_recomputed(log: Log) -> None:
    for conn in log.sql():
        rechain_from(conn, 45, summary="nothing happened")
    # The chain itself is consistent again; the signed root of 41..60 is not.
    expect(log.verify(), 41, DamageKind.RECHAINED, "41..60", "checkpoint 2")
    for conn in log.sql():
        conn.execute(text("DELETE FROM audit_checkpoints WHERE id = 2"))
    assert log.verify().ok  # the database alone can no longer tell …
    expect(log.verify(witness=True), 41, DamageKind.RECHAINED, "witnessed checkpoint 2")


def test_a_checkpoint_re_signed_with_another_key(log: Log, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kernos.policy.audit.canonical import merkle_root
    from kernos.policy.audit.checkpoints import Checkpoint
    from kernos.policy.audit.signing import fingerprint, public_hex, sign

    for conn in log.sql():
        rechain_from(conn, 45, summary="nothing happened")
        rows = conn.execute(
            text("SELECT hash FROM audit_log WHERE seq BETWEEN 41 AND 60 ORDER BY seq")
        )
        root = merkle_root(r.hash for r in rows)
        created_at = json.loads(log.witness.read_text().splitlines()[1])["created_at"]
        head = conn.execute(text("SELECT hash FROM audit_log WHERE seq = 60")).scalar_one()
        forger = Ed25519PrivateKey.generate()
        forged = Checkpoint(
            id=2,
            prev_id=1,
            first_seq=41,
            last_seq=60,
            root=root,
            head_hash=head,
            created_at=created_at,
            key_fingerprint=fingerprint(public_hex(forger)),
            public_key=public_hex(forger),
            signature="",
        )
        signature = sign(forger, forged.message())
        conn.execute(
            text(
                "UPDATE audit_checkpoints SET root = :r, head_hash = :h, public_key = :k, "
                "key_fingerprint = :f, signature = :s WHERE id = 2"
            ),
            {
                "r": root,
                "h": head,
                "k": forged.public_key,
                "f": forged.key_fingerprint,
                "s": signature,
            },
        )
    # Self-consistent, even its signature; only a trusted key (or the witness) tells.
    assert log.verify().ok
    expect(log.verify(trusted=True), 41, DamageKind.RECHAINED, "not a trusted key")
    expect(log.verify(witness=True), 41, DamageKind.RECHAINED, "witnessed checkpoint 2")


def test_the_witness_must_verify(log: Log) -> None:
    lines = log.witness.read_text().splitlines()
    entry = json.loads(lines[0])
    entry["root"] = "0" * 64
    log.witness.write_text(json.dumps(entry) + "\n")
    with pytest.raises(InvalidInput, match="signature does not verify"):
        log.verify(witness=True)
    assert load_public_key(log.public_key) == log.public_key


async def test_a_damaged_range_is_never_signed(log: Log) -> None:
    for conn in log.sql():
        conn.execute(text("UPDATE audit_log SET summary = 'x' WHERE seq = 62"))
    kernel = Kernel(log.settings, plugins=PluginManager(entry_points=False))
    kernel.audit_sink = HashChainAuditSink(kernel.db, kernel.clock)
    await kernel.start()
    try:
        with pytest.raises(CheckFailed, match="seq 62: altered"):
            await AuditLog.for_kernel(kernel).checkpoint()
    finally:
        await kernel.stop()
