"""Trustworthy governance: model profiles, registered sites, plans that take force by approval, checks
they judged, reviews that name what they waive, personal credentials, and the credential in audit events.

Plans filed before this revision were never approved by anyone but their author, so they become
``proposed``: an approver must put one in force before any gate opens again. Checks filed before
it carry no threshold or report hash, so they never open a gate: run the check again.

Revision ID: 0004_trustworthy_governance
Revises: 0003_model_plane
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vitalops.db.tables.base import UtcDateTime

revision = "0004_trustworthy_governance"
down_revision = "0003_model_plane"
branch_labels = None
depends_on = None


def _fk(column: str, table: str, owner: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=f"fk_{owner}_{column}_{table}")


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("tag_values_json", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sites"),
        sa.UniqueConstraint("code", name="uq_sites_code"),
    )
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("profile_json", sa.Text(), nullable=False, server_default="{}"))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="person"))
    op.execute("UPDATE users SET kind = 'service' WHERE role = 'ehr'")
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("issued_by", sa.String(128), nullable=False, server_default=""))
        batch.add_column(sa.Column("personal", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("redeemed_at", UtcDateTime(), nullable=True),
        _fk("user_id", "users", "enrollments"),
        sa.PrimaryKeyConstraint("id", name="pk_enrollments"),
        sa.UniqueConstraint("prefix", name="uq_enrollments_prefix"),
    )
    with op.batch_alter_table("pccps") as batch:
        batch.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="proposed"))
        batch.add_column(sa.Column("decided_at", UtcDateTime(), nullable=True))
    op.create_table(
        "pccp_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pccp_id", sa.Integer(), nullable=False),
        sa.Column("approver", sa.String(128), nullable=False),
        sa.Column("credential", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        _fk("pccp_id", "pccps", "pccp_decisions"),
        sa.PrimaryKeyConstraint("id", name="pk_pccp_decisions"),
    )
    op.create_index("ix_pccp_decisions_pccp_id", "pccp_decisions", ["pccp_id"])
    with op.batch_alter_table("pccp_checks") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="failed"))
        batch.add_column(sa.Column("threshold", sa.Float(), nullable=True))
        batch.add_column(sa.Column("report_hash", sa.String(64), nullable=True))
    with op.batch_alter_table("pccp_reviews") as batch:
        batch.add_column(sa.Column("waived_json", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("credential", sa.String(64), nullable=True))
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("credential", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("credential")
    with op.batch_alter_table("pccp_reviews") as batch:
        batch.drop_column("credential")
        batch.drop_column("waived_json")
    with op.batch_alter_table("pccp_checks") as batch:
        batch.drop_column("report_hash")
        batch.drop_column("threshold")
        batch.drop_column("status")
    op.drop_table("pccp_decisions")
    with op.batch_alter_table("pccps") as batch:
        batch.drop_column("decided_at")
        batch.drop_column("state")
    op.drop_table("enrollments")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("personal")
        batch.drop_column("issued_by")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("profile_json")
    op.drop_table("sites")
