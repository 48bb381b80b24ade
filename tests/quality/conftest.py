from __future__ import annotations

import pytest

from tests.ingest.conftest import register_sites


@pytest.fixture(autouse=True)
def registered_sites(request: pytest.FixtureRequest) -> None:
    """Quality tests ingest at registered sites, as ingest tests do (``tests.ingest.conftest``)."""
    if "database" in request.fixturenames:
        register_sites(request.getfixturevalue("database"))
