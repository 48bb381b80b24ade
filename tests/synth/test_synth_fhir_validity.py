"""A sample of every resource type validates as FHIR R4 (fhir.resources' R4B models) and uses real codes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.procedure import Procedure

from tests.synth.synth_reading import read_ndjson
from vitalops.synth import generate_hospital

MODELS = {
    "Patient": Patient,
    "Encounter": Encounter,
    "Observation": Observation,
    "Condition": Condition,
    "MedicationRequest": MedicationRequest,
    "MedicationAdministration": MedicationAdministration,
    "Procedure": Procedure,
}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fhir")
    generate_hospital(out, patients=160, sites=["north", "south", "east"], seed=21, scenario="unit-change")
    return out


@pytest.mark.parametrize("resource_type", list(MODELS))
def test_a_sample_validates_with_r4b_models(export: Path, resource_type: str) -> None:
    lines = list(read_ndjson(export / f"{resource_type}.ndjson"))
    assert lines
    # The head of the file plus an evenly spaced sample across all patients and sites.
    step = max(1, len(lines) // 150)
    sample = itertools.chain(lines[:50], lines[::step])
    for resource in sample:
        model = MODELS[resource_type].model_validate(resource)
        assert model.id == resource["id"]


def test_codes_come_from_the_expected_systems(export: Path) -> None:
    systems = {
        "Condition": {"http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"},
        "MedicationRequest": {"http://www.nlm.nih.gov/research/umls/rxnorm"},
        "MedicationAdministration": {"http://www.nlm.nih.gov/research/umls/rxnorm"},
        "Procedure": {"http://snomed.info/sct"},
        "Observation": {"http://loinc.org"},
    }
    seen: dict[str, set[str]] = {}
    for resource_type, allowed in systems.items():
        for resource in read_ndjson(export / f"{resource_type}.ndjson"):
            coded = resource.get("code") or resource["medicationCodeableConcept"]
            for coding in coded["coding"]:
                assert coding["system"] in allowed
                seen.setdefault(resource_type, set()).add(coding["code"])
    assert {"91302008", "A41.9"} & seen["Condition"]
    assert seen["Condition"] & {"44054006", "E11.9"} and seen["Condition"] & {"38341003", "I10"}
    assert {"7512", "274783"} <= seen["MedicationAdministration"]
    assert seen["Procedure"] == {"40617009"}
