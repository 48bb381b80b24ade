"""Every ORM table module, imported here so that ``Base.metadata`` is complete for Alembic and tests."""

from vitalops.db.tables import (  # noqa: F401 - registers the tables
    alerts,
    audit,
    cdshooks,
    governance,
    identity,
    ingest,
    monitoring,
    registry,
    retraining,
    scheduling,
    serving,
)
from vitalops.db.tables.audit import AuditEventRow
from vitalops.db.tables.base import Base
from vitalops.db.tables.identity import ApiKeyRow, UserRow

__all__ = ["ApiKeyRow", "AuditEventRow", "Base", "UserRow"]
