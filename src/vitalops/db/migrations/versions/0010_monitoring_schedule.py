"""The monitoring scheduler's lease: one row per schedule, claimed per cadence tick.

Revision ID: 0010_monitoring_schedule
Revises: 0009_alerts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vitalops.db.tables.base import UtcDateTime

revision = "0010_monitoring_schedule"
down_revision = "0009_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitoring_schedule",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("tick", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("models", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("failures_total", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_monitoring_schedule"),
    )


def downgrade() -> None:
    op.drop_table("monitoring_schedule")
