"""A small synthetic hospital normalized into a facts lake once per test session (no database:
normalization and the facts store are the same public functions ingest uses)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from vitalops.features import DEMO_SPECS, TrainingSet, build_training_set, demo_spec_path, load_spec
from vitalops.ingest.normalize import resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.lake.facts import FactsStore
from vitalops.synth import generate_hospital
from vitalops.terminology import Terminology, load_terminology

PSEUDONYM_KEY = b"features-test-installation-key"
INGESTED_AT = datetime(2026, 1, 15, tzinfo=UTC)


@dataclass
class HospitalLake:
    fhir_dir: Path
    lake_root: str
    resources: list[dict]
    pseudonymizer: Pseudonymizer
    terminology: Terminology


def read_resources(fhir_dir: Path) -> list[dict]:
    resources = []
    for path in sorted(fhir_dir.glob("*.ndjson")):
        if path.name == "ground_truth.ndjson":
            continue
        with path.open("rb") as handle:
            resources.extend(orjson.loads(line) for line in handle if line.strip())
    return resources


@pytest.fixture(scope="session")
def hospital_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HospitalLake]:
    root = tmp_path_factory.mktemp("hospital")
    fhir_dir = root / "fhir"
    generate_hospital(fhir_dir, patients=120, sites=["north", "south"], seed=11)
    resources = read_resources(fhir_dir)
    pseudonymizer = Pseudonymizer(PSEUDONYM_KEY)
    terminology = load_terminology()
    result = resources_to_facts(
        resources, site="north", pseudonymizer=pseudonymizer, terminology=terminology,
        known_at_default=INGESTED_AT, batch_id="test", sites={"north": "north", "south": "south"},
    )
    lake_root = str(root / "lake")
    FactsStore(lake_root).append(result.facts)
    yield HospitalLake(fhir_dir, lake_root, resources, pseudonymizer, terminology)


@pytest.fixture(scope="session")
def demo_sets(hospital_lake: HospitalLake) -> dict[str, TrainingSet]:
    """The two demo training sets built once from the hospital lake."""
    return {name: build_training_set(load_spec(demo_spec_path(name)), hospital_lake.lake_root) for name in DEMO_SPECS}
