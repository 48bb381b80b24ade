"""Monitoring: each version's training reference and the time series of metric results.

Revision ID: 0007_monitoring
Revises: 0006_cdshooks_review
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vitalops.db.tables.base import UtcDateTime

revision = "0007_monitoring"
down_revision = "0006_cdshooks_review"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitoring_references",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("reference_sha256", sa.String(64), nullable=False),
        sa.Column("dataset_fingerprint", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"],
                                name="fk_monitoring_references_version_id_model_versions"),
        sa.PrimaryKeyConstraint("version_id", name="pk_monitoring_references"),
    )
    op.create_table(
        "monitoring_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("metric_id", sa.String(200), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("window_start", UtcDateTime(), nullable=False),
        sa.Column("window_end", UtcDateTime(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("details_json", sa.Text(), nullable=False),
        sa.Column("computed_at", UtcDateTime(), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_results"),
        sa.UniqueConstraint("metric_id", "model", "version", "site", "window_start", "window_end",
                            name="uq_monitoring_results_metric_id"),
    )
    op.create_index("ix_monitoring_results_model_window", "monitoring_results", ["model", "window_start"])


def downgrade() -> None:
    op.drop_index("ix_monitoring_results_model_window", table_name="monitoring_results")
    op.drop_table("monitoring_results")
    op.drop_table("monitoring_references")
