from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests.conftest import PG_URL, create_pg_database, drop_pg_database
from vitalops.db import Database
from vitalops.db.migrate import current_revision, head_revision, is_current, upgrade
from vitalops.db.tables import Base


@pytest.fixture(params=["sqlite", "postgresql"] if PG_URL else ["sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
        yield db
        db.dispose()
    else:
        url = create_pg_database()
        db = Database(url)
        yield db
        db.dispose()
        drop_pg_database(url)


def test_migrations_upgrade_an_empty_database_to_head(empty_database: Database) -> None:
    assert current_revision(empty_database) is None
    upgrade(empty_database)
    assert current_revision(empty_database) == head_revision()
    assert is_current(empty_database)
    upgrade(empty_database)  # a second run is a no-op
    assert current_revision(empty_database) == head_revision()


def test_orm_metadata_matches_the_migrated_schema(empty_database: Database) -> None:
    upgrade(empty_database)
    with empty_database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
