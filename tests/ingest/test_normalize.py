from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.ingest.fhir_builders import condition, encounter, observation, patient
from vitalops.ingest.normalize import NormalizeResult, resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.lake.facts import pit_view
from vitalops.terminology import Terminology, load_terminology

INGEST_TIME = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return load_terminology()


def normalize(resources: list[dict], terminology: Terminology) -> NormalizeResult:
    return resources_to_facts(
        resources, site="s1", pseudonymizer=Pseudonymizer(b"secret"), terminology=terminology,
        known_at_default=INGEST_TIME, batch_id="b1",
    )


def test_vital_lands_in_canonical_unit_with_pseudonymous_keys(terminology: Terminology) -> None:
    result = normalize([observation("o1", code="8310-5", value=98.6, unit="[degF]")], terminology)
    (fact,) = result.facts.to_pylist()
    assert fact["concept"] == "body_temperature" and fact["unit"] == "Cel" and fact["kind"] == "vital"
    assert fact["source_unit"] == "[degF]"  # the unit it was sent in, kept beside the converted value
    assert fact["value_num"] == pytest.approx(37.0)
    assert fact["effective_at"] == datetime(2024, 5, 1, 8, tzinfo=UTC)  # the +02:00 offset is honoured
    # Stored: when this version was made available (lastUpdated) and its issued time; a first
    # version is known at issued.
    assert fact["known_at"] == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    assert fact["issued_at"] == datetime(2024, 5, 1, 9, tzinfo=UTC)
    assert pit_view(result.facts).column("known_at").to_pylist() == [datetime(2024, 5, 1, 9, tzinfo=UTC)]
    assert fact["month"] == "2024-05" and fact["site"] == "s1"
    assert fact["patient_key"] == Pseudonymizer(b"secret").patient_key("p1")
    assert "p1" not in str(fact) and "o1" not in str(fact)
    assert (result.read, result.ingested, result.skipped, result.quarantined) == (1, 1, {}, [])


def test_fact_ids_are_stable_across_runs_and_ingest_times(terminology: Terminology) -> None:
    resources = [observation("o1", issued=None, meta=None), patient()]
    first = normalize(resources, terminology).facts["fact_id"].to_pylist()
    later = resources_to_facts(
        resources, site="s1", pseudonymizer=Pseudonymizer(b"secret"), terminology=terminology,
        known_at_default=datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert later.facts["fact_id"].to_pylist() == first


def test_blood_pressure_panel_becomes_component_facts(terminology: Terminology) -> None:
    panel = observation("bp", code="85354-9", value=None, component=[
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
         "valueQuantity": {"value": 80, "unit": "mm[Hg]"}},
    ])
    facts = normalize([panel], terminology).facts.to_pylist()
    assert sorted((f["concept"], f["value_num"]) for f in facts) == [("diastolic_bp", 80.0), ("systolic_bp", 120.0)]


def test_outcomes_of_observations_without_value_status_or_zone(terminology: Terminology) -> None:
    absent = observation("a", value=None, dataAbsentReason={"coding": [{"code": "not-performed"}]})
    missing = observation("m", value=None)
    erroneous = observation("e", status="entered-in-error")
    no_zone = observation("z", effective="2024-05-01T10:00:00")
    bad_unit = observation("u", code="2160-0", value=1.0, unit="furlongs")
    spaced = observation("s", code="2160-0", value=1.2, unit="mg/dl ")
    result = normalize([absent, missing, erroneous, no_zone, bad_unit, spaced], terminology)
    assert result.skipped == {"data absent": 1}
    assert [f["kind"] for f in result.facts.to_pylist()].count("retraction") == 1
    rules = {q.line: q.rule for q in result.quarantined}
    assert rules[2] == "observation.no_value" and rules[4] == "date.no_timezone"
    assert rules[5].startswith("unit.")
    assert [f["value_num"] for f in result.facts.to_pylist() if f["kind"] != "retraction"] == [pytest.approx(1.2)]
    assert result.read == result.ingested + sum(result.skipped.values()) + len(result.quarantined)


def test_date_only_values_are_start_of_day_utc_and_known_at_never_precedes_effective(
    terminology: Terminology,
) -> None:
    result = normalize([patient(birth="1950-03-04", updated="1940-01-01T00:00:00Z")], terminology)
    birth = next(f for f in result.facts.to_pylist() if f["concept"] == "birth")
    assert birth["effective_at"] == datetime(1950, 3, 4, tzinfo=UTC)
    assert birth["known_at"] == birth["effective_at"]


def test_encounter_versions_and_icu_and_disposition(terminology: Terminology) -> None:
    v1 = encounter("e1", version="1", updated="2024-05-01T08:00:00Z", start="2024-05-01T08:00:00Z",
                   status="in-progress")
    v2 = encounter("e1", version="2", updated="2024-05-05T12:00:00Z", start="2024-05-01T08:00:00Z",
                   end="2024-05-05T12:00:00Z", disposition="home")
    v2["location"] = [{"location": {"display": "Intensive care unit"},
                       "period": {"start": "2024-05-02T00:00:00Z", "end": "2024-05-03T00:00:00Z"}}]
    facts = normalize([v1, v2], terminology).facts.to_pylist()
    by_concept = {(f["source_version"], f["concept"]): f for f in facts}
    assert by_concept[("1", "encounter")]["effective_end"] is None
    assert by_concept[("2", "encounter")]["value_code"] == "IMP"
    assert by_concept[("2", "icu_stay")]["effective_end"] == datetime(2024, 5, 3, tzinfo=UTC)
    assert by_concept[("2", "discharge_disposition")]["effective_at"] == datetime(2024, 5, 5, 12, tzinfo=UTC)
    assert len({f["encounter_key"] for f in facts}) == 1


def test_unknown_and_unsupported_types(terminology: Terminology) -> None:
    result = normalize([{"resourceType": "Foo", "id": "x"}, {"resourceType": "AllergyIntolerance", "id": "y"}],
                       terminology)
    assert result.skipped == {"unsupported resource type AllergyIntolerance": 1}
    assert [q.rule for q in result.quarantined] == ["resource.unknown_type"]


def test_a_version_entered_in_error_retracts_the_earlier_version_from_its_known_time(
    terminology: Terminology,
) -> None:
    first = observation("hr1", value=180, issued="2024-05-01T09:00:00Z", updated="2024-05-01T09:00:00Z")
    first["meta"]["versionId"] = "1"
    wrong = observation("hr1", value=180, issued="2024-05-01T09:00:00Z", updated="2024-05-02T12:00:00Z",
                        status="entered-in-error")
    wrong["meta"]["versionId"] = "2"
    facts = normalize([first, wrong], terminology).facts
    kinds = sorted(f["kind"] for f in facts.to_pylist())
    assert kinds == ["retraction", "vital"]  # history stays queryable
    before = pit_view(facts, datetime(2024, 5, 2, 11, 0, tzinfo=UTC)).to_pylist()
    after = pit_view(facts, datetime(2024, 5, 2, 13, 0, tzinfo=UTC)).to_pylist()
    assert [f["concept"] for f in before] == ["heart_rate"]
    assert [f["kind"] for f in after] == ["retraction"]


def test_a_retraction_that_names_no_patient_is_counted_as_skipped(
    terminology: Terminology,
) -> None:
    orphan = observation("o9", status="entered-in-error")
    del orphan["subject"]
    result = normalize([orphan], terminology)
    assert result.facts.num_rows == 0 and result.skipped == {"status entered-in-error": 1}


def test_a_condition_without_an_onset_is_dated_by_its_recorded_date_and_says_so(terminology: Terminology) -> None:
    result = normalize([
        condition("c1", recorded="2024-03-05T09:30:00-05:00"),
        condition("c2", onset="2023-11-01", recorded="2024-03-05"),
        condition("c3"),
    ], terminology)
    facts = {row["source_id"]: row for row in result.facts.to_pylist()}
    recorded, onset = (facts[Pseudonymizer(b"secret").resource_key("Condition", cid)] for cid in ("c1", "c2"))
    assert recorded["effective_at"] == datetime(2024, 3, 5, 14, 30, tzinfo=UTC)
    assert recorded["effective_basis"] == "recorded" and recorded["kind"] == "condition"
    assert onset["effective_at"] == datetime(2023, 11, 1, tzinfo=UTC) and onset["effective_basis"] is None
    (record,) = result.quarantined  # neither date: nothing to put it in time
    assert (record.rule, record.reason) == ("required.onset", "Condition has no onset date or recorded date")
    # Every other kind of fact takes its resource's own time: no basis.
    others = normalize([observation("o1"), patient("p1")], terminology).facts
    assert set(others["effective_basis"].to_pylist()) == {None}
