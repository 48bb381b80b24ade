"""CDS Hooks: the FHIR server base URLs each trusted EHR client may send as ``fhirServer``.

Revision ID: 0008_cds_fhir_servers
Revises: 0007_monitoring
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_cds_fhir_servers"
down_revision = "0007_monitoring"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: the client registered no list (any http(s) fhirServer is accepted, as before this column).
    with op.batch_alter_table("ehr_clients") as batch:
        batch.add_column(sa.Column("fhir_servers_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ehr_clients") as batch:
        batch.drop_column("fhir_servers_json")
