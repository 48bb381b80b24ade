"""CDS Hooks and human review: trusted EHR clients, JWT ids seen, card feedback, the review queue.

Revision ID: 0006_cdshooks_review
Revises: 0005_serving
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vitalops.db.tables.base import UtcDateTime

revision = "0006_cdshooks_review"
down_revision = "0005_serving"
branch_labels = None
depends_on = None


def _fk(column: str, table: str, owner: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=f"fk_{owner}_{column}_{table}")


def upgrade() -> None:
    op.create_table(
        "ehr_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(512), nullable=False),
        sa.Column("jwks_json", sa.Text(), nullable=True),
        sa.Column("jku_allow_json", sa.Text(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        _fk("user_id", "users", "ehr_clients"),
        sa.PrimaryKeyConstraint("id", name="pk_ehr_clients"),
        sa.UniqueConstraint("issuer", name="uq_ehr_clients_issuer"),
    )
    op.create_table(
        "cds_jwt_ids",
        sa.Column("issuer", sa.String(512), nullable=False),
        sa.Column("jti", sa.String(256), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name="pk_cds_jwt_ids"),
    )
    op.create_index("ix_cds_jwt_ids_expires_at", "cds_jwt_ids", ["expires_at"])
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_uuid", sa.String(36), nullable=False),
        sa.Column("prediction_id", sa.String(40), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("issuer", sa.String(512), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("accepted_suggestions_json", sa.Text(), nullable=False),
        sa.Column("override_system", sa.String(256), nullable=True),
        sa.Column("override_code", sa.String(64), nullable=True),
        sa.Column("override_display", sa.String(256), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        _fk("prediction_id", "predictions", "cds_feedback"),
        sa.PrimaryKeyConstraint("id", name="pk_cds_feedback"),
        sa.UniqueConstraint("card_uuid", "outcome", "outcome_at", name="uq_cds_feedback_card_uuid"),
    )
    op.create_index("ix_cds_feedback_prediction_id", "cds_feedback", ["prediction_id"])
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("reasons_json", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        _fk("prediction_id", "predictions", "review_items"),
        sa.PrimaryKeyConstraint("id", name="pk_review_items"),
        sa.UniqueConstraint("prediction_id", name="uq_review_items_prediction_id"),
    )
    op.create_index("ix_review_items_site", "review_items", ["site"])
    op.create_index("ix_review_items_state", "review_items", ["state"])


def downgrade() -> None:
    op.drop_table("review_items")
    op.drop_table("cds_feedback")
    op.drop_table("cds_jwt_ids")
    op.drop_table("ehr_clients")
