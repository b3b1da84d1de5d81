"""Idempotent spawns: a unique spawn key on processes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processes") as batch:
        batch.add_column(sa.Column("spawn_key", sa.String(length=400), nullable=True))
        batch.create_unique_constraint(op.f("uq_processes_spawn_key"), ["spawn_key"])


def downgrade() -> None:
    with op.batch_alter_table("processes") as batch:
        batch.drop_constraint(op.f("uq_processes_spawn_key"), type_="unique")
        batch.drop_column("spawn_key")
