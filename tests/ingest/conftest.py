from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vitalops.auth import SYSTEM
from vitalops.db import Database
from vitalops.ingest import native
from vitalops.sites import create_site, list_sites
from vitalops.synth import RESOURCE_TYPES, generate_hospital


@pytest.fixture(params=["native", "python"])
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test on the C module of ``vitalops.ingest.native`` and on its plain-Python twin."""
    if request.param == "native" and not native.use_native(True):
        pytest.fail("the native ingest module is not built: run `make .venv/.installed-dev` with a C compiler")
    if request.param == "python":
        native.use_native(False)
    yield request.param
    native.use_native(True)


@pytest.fixture(scope="session")
def synth_export(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The FHIR files of a small synthetic hospital (the ground-truth file is not FHIR)."""
    out = tmp_path_factory.mktemp("synth")
    generate_hospital(out, patients=40, sites=["north", "south"], seed=11)
    return [out / f"{kind}.ndjson" for kind in RESOURCE_TYPES if (out / f"{kind}.ndjson").exists()]


#: The sites ingest tests run at: the synthetic hospital's and those tests name with ``site=``.
TEST_SITES = ("north", "south", "east", "lab", "qa", "s1", "x")


def register_sites(database: Database, codes: tuple[str, ...] = TEST_SITES) -> None:
    """Register ``codes`` as sites, each tagged in feeds by its own code (as the demo does)."""
    with database.session() as session:
        known = {site.code for site in list_sites(session)}
        for code in codes:
            if code not in known:
                create_site(session, SYSTEM, code, tag_values=[code])


@pytest.fixture(autouse=True)
def registered_sites(request: pytest.FixtureRequest) -> None:
    """Every test here that has a database ingests at registered sites (``TEST_SITES``)."""
    if "database" in request.fixturenames:
        register_sites(request.getfixturevalue("database"))
