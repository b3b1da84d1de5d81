"""Hash-chained audit log and signed checkpoints (policy issue).

Adds ``hash``, ``prev_hash`` and ``body`` to ``audit_log`` and the ``audit_checkpoints``
table, and chains the rows an older Kernos wrote: renumbered 1..n in their order (the chain
has no gaps; nothing refers to an audit seq), each given its canonical body and hash. The
body and hash are computed here, frozen, exactly as ``kernos.policy.audit.canonical`` defines
them (the kernel may not import the policy layer; a test checks both agree).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

import sqlalchemy as sa
from alembic import op

from kernos.kernel.storage.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_GENESIS = "0" * 64
_COLUMNS = (
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
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _audit_table() -> sa.TableClause:
    return sa.table(
        "audit_log",
        sa.column("seq", sa.Integer()),
        sa.column("ts", UTCDateTime()),
        sa.column("tenant", sa.String()),
        sa.column("principal", sa.String()),
        sa.column("pid", sa.Integer()),
        sa.column("syscall_key", sa.String()),
        sa.column("event", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("target", sa.String()),
        sa.column("decision", sa.String()),
        sa.column("rule", sa.Text()),
        sa.column("args", sa.JSON()),
        sa.column("summary", sa.Text()),
        sa.column("trace_id", sa.String()),
        sa.column("correlation_id", sa.String()),
        sa.column("hash", sa.String()),
        sa.column("prev_hash", sa.String()),
        sa.column("body", sa.Text()),
    )


def _chain_existing_rows() -> None:
    bind = op.get_bind()
    audit = _audit_table()
    c = audit.c
    seqs = [row[0] for row in bind.execute(sa.select(c.seq).order_by(c.seq))]
    # Ascending, each new seq (its rank) is at most its old one and above every seq already
    # moved, so no update collides with a row not yet renumbered.
    for new, old in enumerate(seqs, start=1):
        if new != old:
            bind.execute(sa.update(audit).where(c.seq == old).values(seq=new))
    prev = _GENESIS
    columns = [getattr(c, name) for name in _COLUMNS]
    rows = bind.execute(sa.select(c.seq, *columns).order_by(c.seq)).all()
    for row in rows:
        values = {name: getattr(row, name) for name in _COLUMNS}
        values["ts"] = row.ts.astimezone(UTC).isoformat(timespec="microseconds")
        values.update(seq=row.seq, v=1)
        body = _encode(values)
        digest = hashlib.sha256((prev + body).encode()).hexdigest()
        bind.execute(
            sa.update(audit).where(c.seq == row.seq).values(hash=digest, prev_hash=prev, body=body)
        )
        prev = digest


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("body", sa.Text(), nullable=True))
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("prev_id", sa.Integer(), nullable=True),
        sa.Column("first_seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
        sa.UniqueConstraint("last_seq", name=op.f("uq_audit_checkpoints_last_seq")),
        sa.UniqueConstraint("prev_id", name=op.f("uq_audit_checkpoints_prev_id")),
    )
    _chain_existing_rows()


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("body")
        batch.drop_column("prev_hash")
        batch.drop_column("hash")
