"""MedicationRequests and MedicationAdministrations that name their drug by ``medicationReference``:
a contained Medication, or one elsewhere in the same export, in either order."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from vitalops.auth import SYSTEM
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.ingest.normalize import MEDICATION_READ, NormalizeResult, resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.ingest.service import ingest_paths
from vitalops.lake.facts import FactsStore
from vitalops.lake.quarantine import QuarantineStore
from vitalops.terminology import Terminology, load_terminology

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
#: An NDC coding first and the RxNorm one second: the RxNorm code maps to a concept, so it is taken.
METFORMIN = {"coding": [{"system": NDC, "code": "0093-1048-01", "display": "Metformin 500 mg tab"},
                        {"system": RXNORM, "code": "861007", "display": "metformin hydrochloride 500 MG"}],
             "text": "metformin 500 mg"}
#: An id and a reference that must never reach a quarantine reason.
CANARY_ID = "MRN-CANARY-55101"
FACT_CONTENT = ("kind", "concept", "code_system", "code", "status", "effective_at", "effective_end",
                "source_type", "source_id", "patient_key")


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return load_terminology()


def _normalize(resources: list[dict[str, Any]], terminology: Terminology) -> NormalizeResult:
    return resources_to_facts(resources, site="s1", pseudonymizer=Pseudonymizer(b"med-key"), terminology=terminology,
                              known_at_default=datetime(2025, 1, 1, tzinfo=UTC), batch_id="b1")


def _order(mid: str, **drug: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": mid, "meta": {"versionId": "1"}, "status": "active",
            "intent": "order", "subject": {"reference": "Patient/p1"}, "authoredOn": "2024-02-01T10:00:00Z",
            **drug}


def _administration(mid: str, **drug: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationAdministration", "id": mid, "meta": {"versionId": "1"},
            "status": "completed", "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-02-01T12:00:00Z", **drug}


def _medication(mid: str, code: dict[str, Any] | None = METFORMIN) -> dict[str, Any]:
    medication: dict[str, Any] = {"resourceType": "Medication", "id": mid}
    if code is not None:
        medication["code"] = code
    return medication


def _content(result: NormalizeResult) -> list[tuple[Any, ...]]:
    facts = result.facts
    return sorted(zip(*(facts[name].to_pylist() for name in FACT_CONTENT), strict=True))


def test_a_contained_medication_gives_the_fact_a_codeable_concept_would(terminology: Terminology) -> None:
    coded = _normalize([_order("m1", medicationCodeableConcept=METFORMIN)], terminology)
    contained = _normalize([_order("m1", medicationReference={"reference": "#drug"},
                                   contained=[{**_medication("drug"), "id": "drug"}])], terminology)
    (fact,) = contained.facts.to_pylist()
    assert (fact["code_system"], fact["code"], fact["concept"]) == (RXNORM, "861007", "metformin")
    assert _content(contained) == _content(coded)
    assert contained.quarantined == [] and contained.skipped == {}


def test_a_medication_in_the_same_export_resolves_before_or_after_the_order(terminology: Terminology) -> None:
    coded = _normalize([_order("m1", medicationCodeableConcept=METFORMIN),
                        _administration("a1", medicationCodeableConcept=METFORMIN)], terminology)
    orders = [_order("m1", medicationReference={"reference": "Medication/med1"}),
              _administration("a1", medicationReference={"reference": "https://ehr.example/fhir/Medication/med1"})]
    before = _normalize([_medication("med1"), *orders], terminology)
    after = _normalize([*orders, _medication("med1")], terminology)
    assert _content(before) == _content(after) == _content(coded)
    assert {row["concept"] for row in after.facts.to_pylist()} == {"metformin"}
    for result in (before, after):
        assert result.read == 3 and result.ingested == 2 and result.skipped == {MEDICATION_READ: 1}
        assert result.quarantined == []


def test_a_medication_without_a_code_is_taken_as_an_uncoded_concept_would_be(terminology: Terminology) -> None:
    uncoded = _normalize([_order("m1", medicationCodeableConcept={"text": "compounded cream"})], terminology)
    referenced = _normalize([_order("m1", medicationReference={"reference": "Medication/cream"}),
                             _medication("cream", code=None)], terminology)
    (fact,) = referenced.facts.to_pylist()
    assert fact["code"] is None and fact["concept"] is None
    assert _content(referenced) == _content(uncoded)


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (_order("m1", medicationReference={"reference": f"Medication/{CANARY_ID}"}),
         "MedicationRequest.medicationReference: the Medication is neither contained nor in the same export"),
        (_order("m2", medicationReference={"reference": f"#{CANARY_ID}"},
                contained=[_medication("another")]),
         "MedicationRequest.medicationReference: no contained Medication has its id"),
        (_administration("a1", medicationReference={"display": CANARY_ID}),
         "MedicationAdministration.medicationReference: the Medication is neither contained nor in the same export"),
    ],
)
def test_an_unresolvable_reference_is_quarantined_naming_the_element_not_the_value(
    resource: dict[str, Any], reason: str, terminology: Terminology
) -> None:
    result = _normalize([_medication("unrelated"), resource], terminology)
    assert result.facts.num_rows == 0
    (record,) = result.quarantined
    assert (record.rule, record.reason) == ("reference.unresolvable", reason)
    assert CANARY_ID not in repr(record)


def _write_ndjson(path: Path, resources: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in resources) + b"\n")
    return path


def _lake_content(lake_root: str) -> list[tuple[Any, ...]]:
    table = FactsStore(lake_root).dataset().to_table()
    columns = [c for c in table.column_names if c not in ("batch_id", "known_at")]
    return sorted(zip(*(table[c].to_pylist() for c in columns), strict=True))


PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"}
MEDICATIONS = [_medication(f"med{i}") for i in range(3)]


def _export(folder: Path) -> list[Path]:
    """A Bulk Data export in miniature: Medication.ndjson sorts before MedicationRequest.ndjson."""
    folder.mkdir()
    orders = [_order(f"m{i}", medicationReference={"reference": f"Medication/med{i % 3}"}) for i in range(6)]
    orders.append(_order("lost", medicationReference={"reference": "Medication/not-exported"}))
    return [
        _write_ndjson(folder / "Medication.ndjson", MEDICATIONS),
        _write_ndjson(folder / "MedicationRequest.ndjson", orders),
        _write_ndjson(folder / "Patient.ndjson", [PATIENT]),
    ]


def _mixed_file_after(requests: Path, folder: Path) -> list[Path]:
    """The orders, then one file of the Patient and the Medications (not a Medication file by its
    first line, so its Medications are met only after the orders)."""
    folder.mkdir()
    return [requests, _write_ndjson(folder / "rest.ndjson", [PATIENT, *MEDICATIONS])]


def test_an_export_ingests_alike_whichever_file_comes_first_and_reingesting_adds_nothing(
    home: Settings, database: Database, tmp_path: Path
) -> None:
    medications, requests, patients = _export(tmp_path / "export")
    listed = ingest_paths(database, SYSTEM, [tmp_path / "export"], site="s1")
    assert listed.ingested == 7 and listed.quarantine_reasons == {"reference.unresolvable": 1}
    assert listed.skipped_reasons == {MEDICATION_READ: 3}
    medication_facts = [r for r in FactsStore(home.lake_root).dataset().to_table().to_pylist()
                        if r["kind"] == "medication"]
    assert len(medication_facts) == 6 and {r["concept"] for r in medication_facts} == {"metformin"}

    again = ingest_paths(database, SYSTEM, [tmp_path / "export"], site="s1")
    assert again.facts == 0 and again.read == listed.read
    assert QuarantineStore(home.lake_root).read().num_rows == 1  # not twice

    # The Medication file named after the orders, or Medications met only after them: the same
    # facts, the same quarantine.
    for name, paths in [("reversed", [requests, patients, medications]),
                        ("mixed", _mixed_file_after(requests, tmp_path / "mixed"))]:
        lake_root = str(tmp_path / f"{name}-lake")
        report = ingest_paths(database, SYSTEM, paths, site="s1", lake_root=lake_root)
        assert (report.read, report.ingested, report.quarantine_reasons, report.skipped_reasons) == (
            listed.read, listed.ingested, listed.quarantine_reasons, listed.skipped_reasons), name
        assert _lake_content(lake_root) == _lake_content(home.lake_root), name
        (record,) = QuarantineStore(lake_root).read().to_pylist()
        assert record["rule"] == "reference.unresolvable" and "not-exported" not in record["reason"]


def test_a_bundle_whose_medication_entry_comes_after_the_order_resolves(
    home: Settings, database: Database, tmp_path: Path
) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:3f1c", "resource": _order("m1", medicationReference={"reference": "urn:uuid:7a9d"})},
        {"fullUrl": "urn:uuid:7a9d", "resource": {"resourceType": "Medication", "code": METFORMIN}},
    ]}
    path = tmp_path / "bundle.json"
    path.write_bytes(orjson.dumps(bundle))
    report = ingest_paths(database, SYSTEM, [path], site="s1")
    assert report.quarantined == 0 and report.ingested == 1
    (fact,) = FactsStore(home.lake_root).dataset().to_table().to_pylist()
    assert (fact["code"], fact["concept"]) == ("861007", "metformin")


class Stopped(Exception):
    """Raised from the progress callback: the batch stops between two chunks."""


def test_a_batch_stopped_before_its_held_orders_then_rerun_equals_one_clean_run(
    home: Settings, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orders read before their Medication are normalized last: a batch that stops before
    them commits none, and the rerun gives exactly one clean run's facts and quarantine."""
    _, requests, _ = _export(tmp_path / "export")
    paths = _mixed_file_after(requests, tmp_path / "mixed")
    monkeypatch.setenv("VITALOPS_INGEST_CHUNK_ROWS", "1")
    committed = []

    def stop_after_two_chunks(read: int) -> None:
        committed.append(read)
        if len(committed) == 2:
            raise Stopped

    with pytest.raises(Stopped):
        ingest_paths(database, SYSTEM, paths, site="s1", progress=stop_after_two_chunks)
    partial = FactsStore(home.lake_root).dataset().to_table()
    assert partial.num_rows > 0 and "medication" not in partial["kind"].to_pylist()  # held orders not reached
    rerun = ingest_paths(database, SYSTEM, paths, site="s1")
    clean_root = str(tmp_path / "clean-lake")
    clean = ingest_paths(database, SYSTEM, paths, site="s1", lake_root=clean_root)
    assert rerun.facts == clean.facts - partial.num_rows
    assert _lake_content(home.lake_root) == _lake_content(clean_root)
    assert QuarantineStore(home.lake_root).read().num_rows == QuarantineStore(clean_root).read().num_rows == 1


def test_an_order_inside_an_observation_file_is_held_and_resolved_like_any_other(
    home: Settings, database: Database, tmp_path: Path
) -> None:
    """An Observation file goes through the fast path, which hands it every other line: an order
    there, naming a Medication read later, resolves as in a file of its own."""
    vital = {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
             "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
             "effectiveDateTime": "2024-02-01T10:00:00Z", "valueQuantity": {"value": 80, "unit": "/min"}}
    mixed = _write_ndjson(tmp_path / "Observation.ndjson",
                          [vital, _order("m1", medicationReference={"reference": "Medication/med1"})])
    later = _write_ndjson(tmp_path / "z.ndjson", [PATIENT, MEDICATIONS[1]])
    report = ingest_paths(database, SYSTEM, [mixed, later], site="s1")
    assert (report.read, report.ingested, report.quarantined) == (4, 3, 0)
    kinds = {r["kind"]: r for r in FactsStore(home.lake_root).dataset().to_table().to_pylist()}
    assert kinds["medication"]["concept"] == "metformin" and kinds["vital"]["concept"] == "heart_rate"
