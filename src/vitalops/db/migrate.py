"""Apply and inspect the Alembic migrations shipped inside the package."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from vitalops.db.engine import Database

#: Serializes concurrent upgrades (several API workers starting at once) on PostgreSQL.
_MIGRATION_LOCK = 7_262_000


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", "vitalops.db:migrations")
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of the package."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(database: Database) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(database: Database) -> bool:
    return current_revision(database) == head_revision()


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the database to ``revision``; safe to call from several processes at once."""
    config = _config()
    with database.engine.begin() as connection:
        if database.dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
