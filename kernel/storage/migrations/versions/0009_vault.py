"""Tokenization vault for redacted values (policy issue).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kernos.kernel.storage.models import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vault_entries",
        sa.Column("token", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_vault_entries")),
    )
    op.create_index(op.f("ix_vault_entries_tenant"), "vault_entries", ["tenant"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_vault_entries_tenant"), table_name="vault_entries")
    op.drop_table("vault_entries")
