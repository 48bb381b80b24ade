"""A few resources (a CDS Hooks prefetch) are assembled into facts a row at a time; the facts are
those the column block of ingest makes of the same resources, every column, bit for bit."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalops.ingest import normalize
from vitalops.ingest.normalize import NormalizeResult, resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.terminology import load_terminology

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def by_patient(synth_export: list[Path]) -> list[list[dict]]:
    patients: dict[str, list[dict]] = {}
    for path in synth_export:
        for line in path.read_bytes().splitlines():
            resource = orjson.loads(line)
            subject = resource["id"] if resource["resourceType"] == "Patient" else (
                resource.get("subject") or resource.get("patient") or {}).get("reference", "")
            patients.setdefault(subject.removeprefix("Patient/"), []).append(resource)
    return list(patients.values())


def _both_paths(resources: list[dict], **options: object) -> tuple[NormalizeResult, NormalizeResult]:
    pseudonymizer, terminology = Pseudonymizer(b"small-batch-key"), load_terminology()

    def run() -> NormalizeResult:
        return resources_to_facts(copy.deepcopy(resources), site="north", pseudonymizer=pseudonymizer,
                                  terminology=terminology, known_at_default=AT, **options)  # type: ignore[arg-type]

    rows = run()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(normalize, "ROW_BUILD_LIMIT", -1)  # every chunk a column block, as bulk ingest
        block = run()
    return rows, block


def _assert_same(rows: NormalizeResult, block: NormalizeResult) -> None:
    assert block.fact_columns is None
    assert rows.facts.schema == block.facts.schema
    for name in block.facts.column_names:
        assert rows.facts.column(name).to_pylist() == block.facts.column(name).to_pylist(), name
    assert rows.facts.equals(block.facts)
    assert (rows.read, rows.ingested, rows.duplicates, rows.skipped, rows.ingested_per_site) == (
        block.read, block.ingested, block.duplicates, block.skipped, block.ingested_per_site)
    assert rows.quarantined == block.quarantined


def _defect(resource: dict, rng: random.Random) -> dict:
    """One of the defects whose facts only the column block builds, or a malformed element."""
    resource = copy.deepcopy(resource)
    pick = rng.randrange(4)
    if pick == 0 and resource["resourceType"] == "Observation":
        resource["effectiveDateTime"] = "2024-02-30T10:00:00Z"  # has a zone, but no such day
    elif pick == 1:
        resource.setdefault("meta", {})["lastUpdated"] = "2024-13-01T00:00:00+01:00"
    elif pick == 2:
        resource["status"] = 7
    else:
        resource.get("meta", {}).pop("lastUpdated", None)
    return resource


def test_prefetches_give_the_facts_of_ingest(by_patient: list[list[dict]]) -> None:
    @settings(max_examples=40, deadline=None, database=None)
    @given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 600), defects=st.integers(0, 3),
           repeats=st.integers(0, 2), sites=st.booleans())
    def check(seed: int, size: int, defects: int, repeats: int, sites: bool) -> None:
        rng = random.Random(seed)
        patient = rng.choice(by_patient)
        resources = rng.sample(patient, min(size, len(patient)))
        if rng.random() < 0.2:  # now and then another patient's resources too
            resources += rng.sample(rng.choice(by_patient), 3)
        for _ in range(repeats):  # the same resource twice: its facts once
            if resources:
                resources.append(rng.choice(resources))
        for _ in range(defects):
            if resources:
                position = rng.randrange(len(resources))
                resources[position] = _defect(resources[position], rng)
        options = {"sites": {"north": "north", "south": "south"}} if sites else {}
        rows, block = _both_paths(resources, **options)
        _assert_same(rows, block)

    check()


def test_a_clean_prefetch_is_assembled_row_by_row(by_patient: list[list[dict]]) -> None:
    rows, block = _both_paths(max(by_patient, key=len)[:200])
    assert rows.fact_columns is not None and rows.facts.num_rows > 0
    _assert_same(rows, block)
