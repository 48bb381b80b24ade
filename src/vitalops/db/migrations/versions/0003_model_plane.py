"""Model plane: models, versions, transitions, approvals, change-control plans, checks, reviews, deployments.

Revision ID: 0003_model_plane
Revises: 0002_data_plane
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vitalops.db.tables.base import UtcDateTime

revision = "0003_model_plane"
down_revision = "0002_data_plane"
branch_labels = None
depends_on = None


def _fk(column: str, table: str, owner: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=f"fk_{owner}_{column}_{table}")


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("intended_use", sa.Text(), nullable=False),
        sa.Column("clinical_owner", sa.String(128), nullable=False),
        sa.Column("risk_class", sa.String(32), nullable=False),
        sa.Column("target_population", sa.Text(), nullable=False),
        sa.Column("output_meaning", sa.Text(), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("submitter", sa.String(128), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("dataset_uri", sa.Text(), nullable=True),
        sa.Column("dataset_fingerprint", sa.String(64), nullable=False),
        sa.Column("definitions_version", sa.String(64), nullable=False),
        sa.Column("code_version", sa.String(128), nullable=False),
        sa.Column("estimator", sa.String(64), nullable=False),
        sa.Column("flavor", sa.String(16), nullable=False),
        sa.Column("hyperparameters_json", sa.Text(), nullable=False),
        sa.Column("signature_json", sa.Text(), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("report_json", sa.Text(), nullable=False),
        sa.Column("report_hash", sa.String(64), nullable=False),
        sa.Column("lineage_json", sa.Text(), nullable=False),
        _fk("model_id", "models", "model_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "number", name="uq_model_versions_model_id_number"),
    )
    op.create_index("ix_model_versions_model_id", "model_versions", ["model_id"])
    op.create_table(
        "model_version_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        _fk("version_id", "model_versions", "model_version_transitions"),
        sa.PrimaryKeyConstraint("id", name="pk_model_version_transitions"),
    )
    op.create_index("ix_model_version_transitions_version_id", "model_version_transitions", ["version_id"])
    op.create_table(
        "model_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("approver", sa.String(128), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("report_hash", sa.String(64), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        _fk("version_id", "model_versions", "model_approvals"),
        sa.PrimaryKeyConstraint("id", name="pk_model_approvals"),
    )
    op.create_index("ix_model_approvals_version_id", "model_approvals", ["version_id"])
    op.create_table(
        "pccps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("spec_yaml", sa.Text(), nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        _fk("model_id", "models", "pccps"),
        sa.PrimaryKeyConstraint("id", name="pk_pccps"),
        sa.UniqueConstraint("model_id", "number", name="uq_pccps_model_id_number"),
    )
    op.create_index("ix_pccps_model_id", "pccps", ["model_id"])
    op.create_table(
        "pccp_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("pccp_id", sa.Integer(), nullable=False),
        sa.Column("champion_version_id", sa.Integer(), nullable=True),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("results_json", sa.Text(), nullable=False),
        sa.Column("evidence_hash", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        _fk("version_id", "model_versions", "pccp_checks"),
        _fk("pccp_id", "pccps", "pccp_checks"),
        _fk("champion_version_id", "model_versions", "pccp_checks"),
        sa.PrimaryKeyConstraint("id", name="pk_pccp_checks"),
    )
    op.create_index("ix_pccp_checks_version_id", "pccp_checks", ["version_id"])
    op.create_table(
        "pccp_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("check_id", sa.Integer(), nullable=True),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        _fk("version_id", "model_versions", "pccp_reviews"),
        _fk("check_id", "pccp_checks", "pccp_reviews"),
        sa.PrimaryKeyConstraint("id", name="pk_pccp_reviews"),
    )
    op.create_index("ix_pccp_reviews_version_id", "pccp_reviews", ["version_id"])
    op.create_table(
        "deployment_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("slot", sa.String(16), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("previous_version_id", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        _fk("model_id", "models", "deployment_events"),
        _fk("version_id", "model_versions", "deployment_events"),
        _fk("previous_version_id", "model_versions", "deployment_events"),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_events"),
    )
    op.create_index("ix_deployment_events_model_id", "deployment_events", ["model_id"])


def downgrade() -> None:
    for table in (
        "deployment_events",
        "pccp_reviews",
        "pccp_checks",
        "pccps",
        "model_approvals",
        "model_version_transitions",
        "model_versions",
        "models",
    ):
        op.drop_table(table)
