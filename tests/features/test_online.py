"""One definition, two paths: the online vectors (from the store, and from the patient's FHIR
resources as a prefetch would carry them) equal the offline training row exactly."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalops.errors import InvalidInput
from vitalops.features import (
    features_from_resources,
    features_from_store,
)


def _subject(resource: dict) -> str | None:
    if resource["resourceType"] == "Patient":
        return resource["id"]
    reference = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return reference.removeprefix("Patient/") or None


@pytest.fixture(scope="module")
def offline(hospital_lake, demo_sets):
    sets = demo_sets
    by_patient: dict[str, list[dict]] = {}
    for resource in hospital_lake.resources:
        subject = _subject(resource)
        if subject is not None:
            by_patient.setdefault(hospital_lake.pseudonymizer.patient_key(subject), []).append(resource)
    return sets, by_patient


def _known_by(resources: list[dict], moment: datetime) -> list[dict]:
    return [r for r in resources if datetime.fromisoformat(r["meta"]["lastUpdated"]) <= moment]


def _bits(vector: dict) -> dict:
    return {name: (None if value is None else float(value).hex()) for name, value in vector.items()}


def test_online_vectors_equal_the_offline_row(hospital_lake, offline) -> None:
    sets, by_patient = offline

    @settings(max_examples=16, deadline=None, database=None)
    @given(name=st.sampled_from(["deterioration", "readmission"]), pick=st.floats(min_value=0, max_value=1))
    def check(name: str, pick: float) -> None:
        table = sets[name].table
        row = table.slice(min(int(pick * table.num_rows), table.num_rows - 1), 1).to_pylist()[0]
        spec = sets[name].spec
        expected = {feature: row[feature] for feature in spec.feature_names}
        moment, encounter = row["index_time"], row["encounter_key"]
        # The CDS Hooks context names the encounter; the store path may also infer it (see below).
        from_store = features_from_store(spec, hospital_lake.lake_root, row["patient_key"], at=moment,
                                         encounter_key=encounter)
        from_fhir = features_from_resources(
            spec, _known_by(by_patient[row["patient_key"]], moment), at=moment, site=row["site"],
            pseudonymizer=hospital_lake.pseudonymizer, terminology=hospital_lake.terminology,
            encounter_key=encounter,
        )
        assert _bits(from_store) == _bits(expected)
        assert _bits(from_fhir) == _bits(expected)

    check()


def test_the_current_encounter_is_inferred_at_discharge(hospital_lake, offline) -> None:
    sets, _ = offline
    table = sets["readmission"].table
    for row in table.slice(0, 10).to_pylist():
        vector = features_from_store(sets["readmission"].spec, hospital_lake.lake_root, row["patient_key"],
                                     at=row["index_time"])
        assert _bits(vector) == _bits({name: row[name] for name in sets["readmission"].feature_names})


def test_resources_of_two_patients_are_refused(hospital_lake, offline) -> None:
    sets, by_patient = offline
    patients = list(by_patient.values())[:2]
    with pytest.raises(InvalidInput, match="2 patients"):
        features_from_resources(
            sets["readmission"].spec, patients[0] + patients[1], at=datetime.fromisoformat("2025-06-01T00:00:00+00:00"),
            site="north", pseudonymizer=hospital_lake.pseudonymizer, terminology=hospital_lake.terminology,
        )


def test_facts_known_after_the_index_time_never_change_the_row(hospital_lake, offline) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from vitalops.features.online import vector_from_facts
    from vitalops.lake.facts import FactsStore

    sets, _ = offline
    store = FactsStore(hospital_lake.lake_root)

    @settings(max_examples=10, deadline=None, database=None)
    @given(pick=st.floats(min_value=0, max_value=1), which=st.integers(min_value=0, max_value=10_000),
           delay_us=st.integers(min_value=1, max_value=10**11), value=st.floats(-1e6, 1e6))
    def check(pick: float, which: int, delay_us: int, value: float) -> None:
        table = sets["deterioration"].table
        row = table.slice(min(int(pick * table.num_rows), table.num_rows - 1), 1).to_pylist()[0]
        spec, moment = sets["deterioration"].spec, row["index_time"]
        facts = store.dataset().to_table(filter=pc.field("patient_key") == row["patient_key"])
        late = facts.slice(which % facts.num_rows, 1).to_pylist()[0]
        late.update(fact_id=f"late-{which}", source_id=f"late-{which}", value_num=value,
                    effective_at=min(late["effective_at"], moment),
                    known_at=moment + timedelta(microseconds=delay_us), issued_at=None)
        with_late = pa.concat_tables([facts, pa.Table.from_pylist([late], schema=facts.schema)])
        before = vector_from_facts(facts, spec, row["patient_key"], at=moment, encounter_key=row["encounter_key"])
        after = vector_from_facts(with_late, spec, row["patient_key"], at=moment, encounter_key=row["encounter_key"])
        assert _bits(after) == _bits(before) == _bits({name: row[name] for name in spec.feature_names})

    check()
