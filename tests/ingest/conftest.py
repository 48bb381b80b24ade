from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vitalops.ingest import native
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
