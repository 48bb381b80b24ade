"""A hand-made prefetch with every outcome of normalization in it (units converted, panels with
components, coded and boolean values, versions, medications by reference, retractions, skipped and
quarantined resources) gives the same facts, counts and quarantine records row by row as the column
block of ingest, and the same feature vector; resources of two patients are refused on both paths."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.ingest.fhir_builders import condition, encounter, meta, observation, patient
from tests.ingest.test_small_batches import _assert_same
from vitalops.errors import InvalidInput
from vitalops.features import demo_spec_path, features_from_resources, load_spec
from vitalops.features.online import vector_from_facts
from vitalops.ingest import normalize
from vitalops.ingest.normalize import NormalizeResult, resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.terminology import load_terminology

AT = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
KEY = b"small-batch-cases-key"


def _component(code: str, value: Any, unit: str) -> dict[str, Any]:
    return {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": {"value": value, "unit": unit}}


def _prefetch() -> list[dict[str, Any]]:
    lab = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory"}]}]
    no_meta = observation("o-no-meta", value=91, effective="2024-05-02T07:00:00Z", issued=None)
    del no_meta["meta"]  # known at the ingest time, its version a hash of its content
    no_status = observation("o-no-status", value=70, effective="2024-05-02T08:00:00Z")
    del no_status["status"]
    return [
        patient("p1"),
        encounter("e1", version="1", updated="2024-05-01T06:00:00Z", start="2024-05-01T05:00:00Z",
                  status="in-progress"),
        encounter("e1", version="2", updated="2024-05-01T18:00:00Z", start="2024-05-01T05:00:00Z",
                  status="in-progress"),
        observation("o-hr", value=88, encounter={"reference": "Encounter/e1"}),
        observation("o-hr-later", value=112.5, effective="2024-05-02T09:00:00Z", updated="2024-05-02T09:05:00Z",
                    encounter={"reference": "Encounter/e1"}),
        # creatinine in umol/L, temperature in degrees Fahrenheit: stored in mg/dL and Cel
        observation("o-creat", code="2160-0", value=97.24, unit="umol/L", category=lab),
        observation("o-temp", code="8310-5", value=101.3, unit="[degF]", effective="2024-05-02T06:00:00Z"),
        # a blood pressure panel: one fact per component, none of its own
        observation("o-bp", code="85354-9", value=None, effective="2024-05-02T06:30:00Z",
                    component=[_component("8480-6", 142, "mm[Hg]"), _component("8462-4", 91, "mm[Hg]")]),
        # a code no mapping names, with a UCUM unit kept as the source unit
        observation("o-local", code="99999-9", value=3, unit="mg"),
        observation("o-coded", code="2708-6", value=None,
                    valueCodeableConcept={"coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]}),
        observation("o-bool", code="99998-1", value=None, valueBoolean=True),
        no_meta,
        # retracted: one retraction fact supersedes version 1
        observation("o-retract", value=60, effective="2024-05-01T11:00:00Z",
                    meta=meta("2024-05-01T11:00:00Z", "1")),
        observation("o-retract", value=60, effective="2024-05-01T11:00:00Z", status="entered-in-error",
                    meta=meta("2024-05-01T15:00:00Z", "2")),
        # skipped: data absent, free text, a panel of members only
        observation("o-absent", value=None, dataAbsentReason={"text": "not done"}),
        observation("o-text", code="99997-3", value=None, valueString="free text"),
        observation("o-members", code="85354-9", value=None, hasMember=[{"reference": "Observation/o-bp"}]),
        # quarantined: no status, a unit that does not convert, a time without a zone, a status
        # that is not text, a category that is not a list, no subject, a contained subject
        no_status,
        observation("o-bad-unit", value=80, unit="kg"),
        observation("o-no-zone", value=80, effective="2024-05-01T10:00:00"),
        observation("o-status-number", value=80, status=7),
        observation("o-category-text", value=80, category="vital-signs"),
        {**observation("o-no-subject", value=80), "subject": None},
        observation("o-contained", value=80, subject={"reference": "#p1"}),
        condition("c1", onset="2019-04-01"),
        condition("c2", recorded="2023-02-01", code="13645005"),  # dated by its recordedDate
        {"resourceType": "Medication", "id": "m1",
         "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361"}]}},
        {"resourceType": "MedicationRequest", "id": "mr1", "meta": meta("2024-05-01T08:00:00Z"),
         "status": "active", "intent": "order", "subject": {"reference": "Patient/p1"},
         "medicationReference": {"reference": "Medication/m1"}, "authoredOn": "2024-05-01T08:00:00Z"},
        {"resourceType": "Appointment", "id": "a1"},  # R4, not ingested: skipped
        {"resourceType": "NotAResource", "id": "x1"},  # quarantined
        {"id": "no-type"},  # quarantined
    ]


def _run(resources: list[dict[str, Any]], *, block: bool) -> NormalizeResult:
    def run() -> NormalizeResult:
        return resources_to_facts(copy.deepcopy(resources), site="north", pseudonymizer=Pseudonymizer(KEY),
                                  terminology=load_terminology(), known_at_default=AT)

    if not block:
        return run()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(normalize, "ROW_BUILD_LIMIT", -1)  # every chunk a column block, as bulk ingest
        return run()


def _by_concept(result: NormalizeResult) -> dict[str | None, list[dict[str, Any]]]:
    found: dict[str | None, list[dict[str, Any]]] = {}
    for row in result.facts.to_pylist():
        found.setdefault(row["concept"], []).append(row)
    return found


def test_every_outcome_row_by_row_is_the_column_blocks() -> None:
    resources = _prefetch()
    rows, block = _run(resources, block=False), _run(resources, block=True)
    assert rows.fact_columns is not None  # assembled row by row, not handed to the block
    _assert_same(rows, block)
    facts = _by_concept(rows)
    assert facts["creatinine"][0]["value_num"] == pytest.approx(97.24 / 88.42, rel=1e-6)  # umol/L per mg/dL
    assert (facts["creatinine"][0]["unit"], facts["creatinine"][0]["source_unit"]) == ("mg/dL", "umol/L")
    assert facts["body_temperature"][0]["value_num"] == pytest.approx(38.5, abs=1e-9)
    assert [f["value_num"] for f in facts["systolic_bp"] + facts["diastolic_bp"]] == [142.0, 91.0]
    assert facts["systolic_bp"][0]["source_id"] == facts["diastolic_bp"][0]["source_id"]  # one panel
    assert "bp_panel" not in facts
    assert [f["value_code"] for f in facts["spo2"]] == ["260385009"]
    assert len(facts["heart_rate"]) == 4  # o-hr, o-hr-later, o-no-meta and version 1 of o-retract
    assert [f["kind"] for f in facts[None] if f["kind"] == "retraction"] == ["retraction"]
    assert rows.duplicates == 0 and rows.read == len(resources)
    assert {q.rule for q in rows.quarantined} == {
        "required.status", "unit.unconvertible", "date.no_timezone", "code.not_in_value_set", "resource.malformed",
        "required.subject",
        "reference.unresolvable", "resource.unknown_type", "resource.no_type"}
    assert rows.skipped["data absent"] == 1 and rows.skipped["panel without its own value"] == 1
    assert rows.skipped["unsupported resource type Appointment"] == 1


@pytest.mark.parametrize("extra", ["unreadable date", "repeated resource"])
def test_what_only_the_column_block_handles_goes_to_it_with_the_same_outcome(extra: str) -> None:
    resources = _prefetch()
    if extra == "unreadable date":  # has a zone, but no such day: the resource is quarantined whole
        resources.append(observation("o-feb-30", value=80, effective="2024-02-30T10:00:00Z"))
    else:  # the same resource twice: its facts once
        resources.append(copy.deepcopy(resources[3]))
    rows, block = _run(resources, block=False), _run(resources, block=True)
    assert rows.fact_columns is None  # handed to the block
    _assert_same(rows, block)
    if extra == "unreadable date":
        assert [q.rule for q in rows.quarantined].count("date.invalid") == 1
    else:
        assert rows.duplicates == 1


def test_the_vector_from_the_rows_is_the_vector_from_the_block_table() -> None:
    spec = load_spec(demo_spec_path("deterioration"))
    resources = _prefetch()
    rows, block = _run(resources, block=False), _run(resources, block=True)
    (patient_key,) = rows.patient_keys()
    for at in (AT, datetime(2024, 5, 1, 12, 0, tzinfo=UTC), datetime(2024, 5, 2, 6, 45, tzinfo=UTC)):
        from_rows = vector_from_facts(rows.facts_for_kernel, spec, patient_key, at=at)
        assert from_rows == vector_from_facts(block.facts, spec, patient_key, at=at)
        assert from_rows == features_from_resources(spec, copy.deepcopy(resources), at=at, site="north",
                                                    pseudonymizer=Pseudonymizer(KEY), terminology=load_terminology())
    assert vector_from_facts(rows.facts_for_kernel, spec, patient_key, at=AT)["heart_rate_last"] == 112.5


def test_resources_of_two_patients_are_refused_on_both_paths() -> None:
    spec = load_spec(demo_spec_path("deterioration"))
    resources = [*_prefetch(), observation("o-other", value=70, pid="p2")]
    for limit in (normalize.ROW_BUILD_LIMIT, -1):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(normalize, "ROW_BUILD_LIMIT", limit)
            with pytest.raises(InvalidInput, match="2 patients"):
                features_from_resources(spec, copy.deepcopy(resources), at=AT, site="north",
                                        pseudonymizer=Pseudonymizer(KEY), terminology=load_terminology())
