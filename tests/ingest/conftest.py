from __future__ import annotations

from pathlib import Path

import pytest

from vitalops.synth import RESOURCE_TYPES, generate_hospital


@pytest.fixture(scope="session")
def synth_export(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The FHIR files of a small synthetic hospital (the ground-truth file is not FHIR)."""
    out = tmp_path_factory.mktemp("synth")
    generate_hospital(out, patients=40, sites=["north", "south"], seed=11)
    return [out / f"{kind}.ndjson" for kind in RESOURCE_TYPES if (out / f"{kind}.ndjson").exists()]
