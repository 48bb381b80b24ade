"""The metadata database: engine and sessions, ORM tables, Alembic migrations."""

from vitalops.db.engine import Database

__all__ = ["Database"]
