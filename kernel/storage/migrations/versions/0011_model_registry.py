"""Model registry: model versions and their deployment history (model-serving issue).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kernos.kernel.storage.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=True),
        sa.Column("key_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.Column("price_per_1k_input", sa.Float(), nullable=True),
        sa.Column("price_per_1k_output", sa.Float(), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("canary_percent", sa.Integer(), nullable=True),
        sa.Column("registered_by", sa.String(length=127), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("promoted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
    )
    op.create_index(op.f("ix_model_versions_stage"), "model_versions", ["stage"], unique=False)
    op.create_table(
        "model_deployments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("canary_percent", sa.Integer(), nullable=True),
        sa.Column("previous_stage", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=127), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_deployments")),
    )
    op.create_index(op.f("ix_model_deployments_name"), "model_deployments", ["name"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_model_deployments_name"), table_name="model_deployments")
    op.drop_table("model_deployments")
    op.drop_index(op.f("ix_model_versions_stage"), table_name="model_versions")
    op.drop_table("model_versions")
