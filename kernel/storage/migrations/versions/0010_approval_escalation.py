"""Approval deadlines and escalation, and approval rules (policy issue).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kernos.kernel.storage.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("step_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("escalation", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("level", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(sa.Column("rule", sa.Text(), nullable=True))
    op.create_table(
        "approval_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("line", sa.String(length=1000), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("object", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("condition", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=63), nullable=False),
        sa.Column("deadline_seconds", sa.Float(), nullable=True),
        sa.Column("escalation", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_rules")),
        sa.UniqueConstraint("line", name=op.f("uq_approval_rules_line")),
    )


def downgrade() -> None:
    op.drop_table("approval_rules")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("rule")
        batch.drop_column("level")
        batch.drop_column("escalation")
        batch.drop_column("step_seconds")
