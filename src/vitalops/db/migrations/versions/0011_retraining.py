"""Retraining requests, and the end of a deployment's declared period (a retrained shadow's).

Revision ID: 0011_retraining
Revises: 0010_monitoring_schedule
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vitalops.db.tables.base import UtcDateTime

revision = "0011_retraining"
down_revision = "0010_monitoring_schedule"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("state IN ('pending', 'running')")


def _fk(column: str, table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=f"fk_retraining_requests_{column}_{table}")


def upgrade() -> None:
    op.create_table(
        "retraining_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("alerts", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("facts_version", sa.Integer(), nullable=True),
        sa.Column("candidate_version", sa.Integer(), nullable=True),
        sa.Column("check_id", sa.Integer(), nullable=True),
        sa.Column("check_status", sa.String(16), nullable=True),
        sa.Column("failed_criteria", sa.Text(), nullable=True),
        sa.Column("shadow_until", UtcDateTime(), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("outcome_alert_id", sa.Integer(), nullable=True),
        _fk("alert_id", "alerts"),
        _fk("check_id", "pccp_checks"),
        _fk("incident_id", "incidents"),
        _fk("outcome_alert_id", "alerts"),
        sa.PrimaryKeyConstraint("id", name="pk_retraining_requests"),
    )
    op.create_index("uq_retraining_requests_active_model", "retraining_requests", ["model"], unique=True,
                    sqlite_where=_ACTIVE, postgresql_where=_ACTIVE)
    op.add_column("deployment_events", sa.Column("ends_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployment_events") as batch:
        batch.drop_column("ends_at")
    op.drop_index("uq_retraining_requests_active_model", table_name="retraining_requests")
    op.drop_table("retraining_requests")
