"""Serving: registered definition sets, the prediction log (every prediction, shadow ones included) and
observed outcomes.

Revision ID: 0005_serving
Revises: 0004_trustworthy_governance
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vitalops.db.tables.base import UtcDateTime

revision = "0005_serving"
down_revision = "0004_trustworthy_governance"
branch_labels = None
depends_on = None


def _fk(column: str, table: str, owner: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=f"fk_{owner}_{column}_{table}")


def upgrade() -> None:
    op.create_table(
        "definition_sets",
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("document_json", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_definition_sets"),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=True),
        sa.Column("deployment_event_id", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("served", sa.Boolean(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("input_kind", sa.String(16), nullable=False),
        sa.Column("features_json", sa.Text(), nullable=False),
        sa.Column("definitions_version", sa.String(64), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("band", sa.String(16), nullable=False),
        sa.Column("decision", sa.Boolean(), nullable=False),
        sa.Column("explanation_method", sa.String(64), nullable=False),
        sa.Column("explanation_json", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        _fk("model_id", "models", "predictions"),
        _fk("version_id", "model_versions", "predictions"),
        _fk("deployment_event_id", "deployment_events", "predictions"),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
    )
    op.create_index("ix_predictions_at", "predictions", ["at"])
    op.create_index("ix_predictions_model_id", "predictions", ["model_id"])
    op.create_index("ix_predictions_patient_key", "predictions", ["patient_key"])
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.String(40), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("outcome", sa.Integer(), nullable=False),
        sa.Column("observed_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        _fk("prediction_id", "predictions", "outcomes"),
        sa.PrimaryKeyConstraint("id", name="pk_outcomes"),
        sa.UniqueConstraint("prediction_id", "source", name="uq_outcomes_prediction_id"),
    )
    op.create_index("ix_outcomes_prediction_id", "outcomes", ["prediction_id"])


def downgrade() -> None:
    op.drop_table("outcomes")
    op.drop_table("predictions")
    op.drop_table("definition_sets")
