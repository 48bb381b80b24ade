"""Data plane: ingest batches.

Revision ID: 0002_data_plane
Revises: 0001_foundation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vitalops.db.tables.base import UtcDateTime

revision = "0002_data_plane"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_batches",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("counts_json", sa.Text(), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ingest_batches"),
    )
    op.create_index("ix_ingest_batches_started_at", "ingest_batches", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_ingest_batches_started_at", table_name="ingest_batches")
    op.drop_table("ingest_batches")
