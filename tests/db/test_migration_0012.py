"""Migration 0012 (``serving_error_counts``) downgrades to 0011 and upgrades again, on each backend."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from tests.db.test_migrations import empty_database  # noqa: F401 - the fixture
from vitalops.db import Database
from vitalops.db.migrate import current_revision, head_revision, upgrade


def _downgrade(database: Database, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", "vitalops.db:migrations")
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _tables(database: Database) -> set[str]:
    return set(sa.inspect(database.engine).get_table_names())


def test_the_error_counts_table_comes_and_goes_with_its_migration(empty_database: Database) -> None:  # noqa: F811
    upgrade(empty_database)
    assert "serving_error_counts" in _tables(empty_database)
    _downgrade(empty_database, "0011_retraining")
    assert current_revision(empty_database) == "0011_retraining"
    assert "serving_error_counts" not in _tables(empty_database)
    assert "predictions" in _tables(empty_database)
    upgrade(empty_database)
    assert current_revision(empty_database) == head_revision()
    assert "serving_error_counts" in _tables(empty_database)
