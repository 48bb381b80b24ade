"""Counts of failed prediction requests per model, version, site, hour and error code.

Revision ID: 0012_serving_error_counts
Revises: 0011_retraining
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vitalops.db.tables.base import UtcDateTime

revision = "0012_serving_error_counts"
down_revision = "0011_retraining"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serving_error_counts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("hour_start", UtcDateTime(), nullable=False),
        sa.Column("served", sa.Boolean(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_serving_error_counts_model_id_models"),
        sa.PrimaryKeyConstraint("id", name="pk_serving_error_counts"),
        sa.UniqueConstraint("model_id", "version", "site", "hour_start", "served", "code",
                            name="uq_serving_error_counts_model_id"),
    )


def downgrade() -> None:
    op.drop_table("serving_error_counts")
