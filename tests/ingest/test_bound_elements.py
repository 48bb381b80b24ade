"""Bound elements are checked against their FHIR value sets, and codes enter the facts only when
they are what they claim to be: a code outside a required value set quarantines the resource (a
reason without the value); a code under an unknown system, or not in its system's syntax, is not
stored; free text never reaches the facts table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.ingest.fhir_builders import encounter, observation, patient
from vitalops.ingest.normalize import NormalizeResult, resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.terminology import load_terminology
from vitalops.terminology.code_systems import well_formed

CANARY = "ZZCANARY-NAME-7731"
TERMINOLOGY = load_terminology()
AT = datetime(2025, 1, 1, tzinfo=UTC)
SUBJECT = {"reference": "Patient/p1"}


def _facts(resources: list[dict[str, Any]]) -> NormalizeResult:
    return resources_to_facts(resources, site="north", pseudonymizer=Pseudonymizer(b"bound-test-key"),
                              terminology=TERMINOLOGY, known_at_default=AT)


def _condition(cid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": SUBJECT, "onsetDateTime": "2024-01-01",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}, **extra}


def _order(mid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": mid, "status": "active", "intent": "order",
            "subject": SUBJECT, "authoredOn": "2024-02-01T10:00:00Z",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "6809"}]}, **extra}


def _status_concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


@pytest.mark.parametrize(
    ("resource", "element"),
    [
        (observation("o1", status="MRN-CANARY-99812"), "Observation.status"),
        (observation("o2", status="FINAL"), "Observation.status"),
        ({**patient("p1"), "gender": CANARY}, "Patient.gender"),
        ({**patient("p1"), "gender": "F"}, "Patient.gender"),
        (encounter("e1", version="1", updated="2024-05-01T00:00:00Z", start="2024-05-01T00:00:00Z",
                   status=CANARY), "Encounter.status"),
        (_condition("c1", clinicalStatus=_status_concept(CLINICAL, CANARY)), "Condition.clinicalStatus"),
        (_condition("c2", verificationStatus=_status_concept(VERIFICATION, "sure")), "Condition.verificationStatus"),
        (_order("m1", status=CANARY), "MedicationRequest.status"),
        (_order("m2", intent=CANARY), "MedicationRequest.intent"),
    ],
)
def test_a_code_outside_a_required_value_set_is_quarantined(resource: dict[str, Any], element: str) -> None:
    result = _facts([resource])
    assert result.facts.num_rows == 0
    (record,) = result.quarantined
    assert record.rule == "code.not_in_value_set"
    assert record.reason.startswith(f"{element}: the code is not in value set http://hl7.org/fhir/ValueSet/")
    assert not any(bad in record.reason for bad in ("CANARY", "FINAL", "sure"))


def test_valid_bound_codes_are_stored() -> None:
    result = _facts([
        observation("o1", status="amended"), patient("p1"),
        _condition("c1", clinicalStatus=_status_concept(CLINICAL, "active"),
                   verificationStatus=_status_concept(VERIFICATION, "confirmed")),
        _order("m1"),
    ])
    assert not result.quarantined
    by_type = {row["source_type"]: row for row in result.facts.to_pylist()}
    assert by_type["Observation"]["status"] == "amended"
    assert by_type["Condition"]["status"] == "active"
    assert by_type["MedicationRequest"]["status"] == "active"
    sex = [row for row in result.facts.to_pylist() if row["concept"] == "sex"]
    assert [row["value_code"] for row in sex] == ["female"]


def _string_cells(table: pa.Table) -> list[str]:
    return [value for name in table.column_names if pa.types.is_string(table.schema.field(name).type)
            for value in table[name].to_pylist() if value is not None]


def test_codes_under_unknown_systems_or_out_of_syntax_never_become_facts() -> None:
    local = {"coding": [{"system": "https://north.hospital.example/lab", "code": CANARY, "display": CANARY}],
             "text": CANARY}
    bad_loinc = {"coding": [{"system": "http://loinc.org", "code": CANARY}]}
    resources = [
        observation("o1", code="8867-4", value=70, category=[local]),
        {**observation("o2", value=None), "code": local, "valueQuantity": {"value": 3, "unit": CANARY}},
        {**observation("o3", value=None), "code": bad_loinc, "valueQuantity": {"value": 3, "unit": "{CANARY}/min"}},
        {**observation("o4", value=None, code="12345-6"), "valueCodeableConcept": local},
        _condition("c1", code=local),
        _order("m1", medicationCodeableConcept=local),
        {**encounter("e1", version="1", updated="2024-05-01T00:00:00Z", start="2024-05-01T00:00:00Z",
                     end="2024-05-02T00:00:00Z", disposition=CANARY),
         "class": {"system": "https://north.hospital.example/class", "code": CANARY}},
        {**patient("p1"), "extension": [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                                         "extension": [{"url": "ombCategory",
                                                        "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238",
                                                                        "code": CANARY}}]}]},
    ]
    result = _facts(resources)
    assert not result.quarantined
    assert result.skipped == {"coded value without a known code": 1}
    assert result.facts.num_rows >= 7
    assert not any("CANARY" in cell for cell in _string_cells(result.facts))
    unmapped = [row for row in result.facts.to_pylist() if row["source_type"] == "Observation" and not row["concept"]]
    assert [(row["code"], row["unit"], row["value_num"]) for row in unmapped] == [(None, None, 3.0), (None, None, 3.0)]


def test_the_local_codes_file_admits_a_local_code(tmp_path: Path) -> None:
    mappings = tmp_path / "local-codes.csv"
    mappings.write_text("system,code,concept\nhttps://north.hospital.example/lab,LACT-ART,lactate\n")
    local = load_terminology(mappings)
    assert local.is_storable("https://north.hospital.example/lab", "LACT-ART")
    assert not local.is_storable("https://north.hospital.example/lab", "LACT-VEN")


@pytest.mark.parametrize(
    ("system", "code", "ok"),
    [
        ("http://loinc.org", "8867-4", True), ("http://loinc.org", "LA6576-8", True),
        ("http://loinc.org", "8867", False), ("http://loinc.org", "12345678-9", False),
        ("http://snomed.info/sct", "44054006", True), ("http://snomed.info/sct", "4405x006", False),
        ("http://snomed.info/sct", "12", False), ("urn:oid:2.16.840.1.113883.6.96", "44054006", True),
        ("http://www.nlm.nih.gov/research/umls/rxnorm", "6809", True),
        ("http://www.nlm.nih.gov/research/umls/rxnorm", "RX6809", False),
        ("http://hl7.org/fhir/sid/icd-10-cm", "E11.9", True), ("http://hl7.org/fhir/sid/icd-10-cm", "I10", True),
        ("http://hl7.org/fhir/sid/icd-10-cm", "U07.1", True), ("http://hl7.org/fhir/sid/icd-10-cm", "diabetes", False),
        ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "IMP", True),
        ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "SMITH", False),
        ("https://north.hospital.example/lab", "HR", False), (None, "8867-4", False), ("http://loinc.org", 8867, False),
    ],
)
def test_code_syntax(system: Any, code: Any, ok: bool) -> None:
    assert well_formed(system, code) is ok
