from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import carebundle
import orjson
import pyarrow.compute as pc
import pytest

from vitalops.fhir.readers import iter_resources
from vitalops.ingest.normalize import EXTRACTORS, MEDICATION_READ, records_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.terminology import Terminology, load_terminology

SUPPORTED = tuple(EXTRACTORS)


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return load_terminology()


def _normalize(records, terminology: Terminology):
    return records_to_facts(
        records,
        site="hl7",
        pseudonymizer=Pseudonymizer(b"k"),
        terminology=terminology,
        known_at_default=datetime(2025, 1, 1, tzinfo=UTC),
        batch_id="hl7",
    )


def test_official_examples_of_supported_types_ingest_with_counts_that_add_up(
    hl7_examples: Path, terminology: Terminology
) -> None:
    files = sorted(p for p in hl7_examples.glob("*.json") if p.name.split("-")[0] in SUPPORTED)
    # The examples' Medications are the export's too, read after the orders that name them.
    medications = sorted(hl7_examples.glob("Medication-*.json"))
    records = [record for path in [*files, *medications] for record in iter_resources(path)]
    result = _normalize(records, terminology)
    assert result.read == len(files) + len(medications) and len(files) > 150
    assert result.read == result.ingested + sum(result.skipped.values()) + len(result.quarantined)
    assert result.skipped[MEDICATION_READ] == len(medications)
    # 123 of 178 (69%) while orders naming a Medication by reference were skipped; 132 (74%) since.
    assert result.ingested >= 0.74 * len(files)
    by_reference = [r for r in result.facts.to_pylist() if r["source_type"] == "MedicationRequest"
                    and r["source_id"] == Pseudonymizer(b"k").resource_key("MedicationRequest", "medrx002")]
    assert [(r["code_system"], r["code"]) for r in by_reference] == [("http://snomed.info/sct", "317935006")]
    # Valid FHIR, but some examples lack what a fact needs (a time, a patient): those, and only
    # those, are quarantined.
    rules = Counter(q.rule for q in result.quarantined)
    assert set(rules) <= {
        "required.effective",
        "required.period_start",
        "required.performed",
        "required.onset",
        "required.subject",
        "reference.unresolvable",
        "observation.no_value",
    }
    example = next(r for r in result.facts.to_pylist() if r["concept"] == "body_weight")
    assert example["unit"] == "kg" and example["kind"] == "vital"
    kinds = set(result.facts["kind"].to_pylist())
    assert {"demographic", "encounter", "vital", "lab", "condition", "medication", "procedure"} <= kinds
    assert result.facts.num_rows > result.ingested


def test_official_bundles_are_expanded_without_crashing(hl7_examples: Path, terminology: Terminology) -> None:
    files = sorted(hl7_examples.glob("Bundle-*.json"))
    result = _normalize((r for path in files for r in iter_resources(path)), terminology)
    assert result.read > len(files)
    assert result.read == result.ingested + sum(result.skipped.values()) + len(result.quarantined)


def test_carebundle_cohort_and_its_defects(terminology: Terminology, tmp_path: Path) -> None:
    bundles = [orjson.loads(carebundle.to_json(b)) for b in carebundle.generate_cohort(count=5, seed=3)]
    clean_dir, dirty_dir = tmp_path / "clean", tmp_path / "dirty"
    clean_dir.mkdir()
    dirty_dir.mkdir()
    defects = []
    for index, bundle in enumerate(bundles):
        (clean_dir / f"b{index}.json").write_bytes(orjson.dumps(bundle))
        imperfection = carebundle.Imperfection(
            missing_field=0.3, duplicate_entry=0.3, unparseable_value=0.3, unknown_code_system=0.3
        )
        dirty, applied = carebundle.inject_defects(bundle, imperfection, seed=index)
        defects.extend(applied)
        (dirty_dir / f"b{index}.json").write_bytes(orjson.dumps(dirty))
    clean = _normalize(iter_resources(clean_dir), terminology)
    assert clean.quarantined == [] and clean.ingested > 0 and clean.duplicates == 0
    assert clean.read == clean.ingested + sum(clean.skipped.values())
    patients = set(clean.facts.filter(pc.equal(clean.facts["source_type"], "Patient"))["patient_key"].to_pylist())
    assert set(clean.facts["patient_key"].to_pylist()) == patients  # urn:uuid references resolved
    assert defects
    dirty = _normalize(iter_resources(dirty_dir), terminology)
    assert dirty.read == dirty.ingested + sum(dirty.skipped.values()) + len(dirty.quarantined)
    # Values made unparseable and removed required fields are quarantined; near-duplicates carry
    # fresh ids, so they are distinct resources to us.
    rules = {q.rule for q in dirty.quarantined}
    assert {"value.not_numeric", "required.status"} <= rules
    assert dirty.ingested > clean.ingested * 0.8
