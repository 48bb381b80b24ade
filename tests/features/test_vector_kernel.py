"""The plain-Python vector kernel equals the DuckDB kernel bit for bit: on random patients and
moments of the synthetic hospital (including moments exactly at facts' effective, known and end
times, where the window and point-in-time boundaries bite), and on hand-built edge cases."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.features.fact_rows import T0, fact, hours, inpatient_stay, patient, table
from vitalops.features import demo_spec_path, load_spec
from vitalops.features.definitions import spec_from_dict
from vitalops.features.engine import compute_features
from vitalops.features.facts_view import ENGINE_COLUMNS
from vitalops.features.vector_kernel import compute_features_small, current_encounter, facts_from_table
from vitalops.lake.facts import FactsStore
from vitalops.lake.schema import TIMESTAMP

AGGREGATIONS = ("last", "first", "min", "max", "mean", "count", "slope", "delta", "time_since_last", "exists")
WINDOWS = ("1h", "6h", "24h", "72h", "7d")
EVERY_KIND = spec_from_dict(
    {
        "name": "every-kind",
        "cohort": {"schedule": "every", "every": "4h"},
        "label": {"kind": "outcome", "outcomes": [{"kind": "outcome", "concept": "death"}], "horizon": "48h"},
        "features": [
            *[
                {"name": f"{concept}_{agg}_{position}", "kind": "measurement", "concept": concept, "agg": agg,
                 "window": WINDOWS[(position + len(concept)) % len(WINDOWS)]}
                for concept in ("heart_rate", "systolic_bp", "lactate", "creatinine", "body_temperature")
                for position, agg in enumerate(AGGREGATIONS)
            ],
            {"name": "spo2_mean_imputed", "kind": "measurement", "concept": "spo2", "agg": "mean",
             "window": "4h", "impute": 97.0},
            {"name": "age", "kind": "age"},
            {"name": "female", "kind": "sex", "value": "female"},
            {"name": "male", "kind": "sex", "value": "male"},
            {"name": "heart_failure", "kind": "condition", "concept": "heart_failure"},
            {"name": "sepsis_30d", "kind": "condition", "concept": "sepsis", "window": "30d"},
            {"name": "diabetes_365d", "kind": "condition", "concept": "type2_diabetes", "window": "365d"},
            {"name": "vasopressor_active", "kind": "medication", "concept": "vasopressor"},
            {"name": "antibiotic_orders_7d", "kind": "medication", "concept": "vancomycin",
             "mode": "count", "window": "7d"},
            {"name": "inpatient_365d", "kind": "utilization", "encounter_class": "IMP", "window": "365d"},
            {"name": "emergency_30d", "kind": "utilization", "encounter_class": "EMER", "window": "30d"},
            {"name": "length_of_stay", "kind": "length_of_stay"},
        ],
    },
    source="every-kind.yaml",
)


def _bits(table: pa.Table) -> list[dict]:
    rows = table.to_pylist()
    return [{name: value.hex() if isinstance(value, float) else value for name, value in row.items()} for row in rows]


def _assert_same(facts: pa.Table, index: pa.Table, spec, *, impute: bool = True) -> None:
    expected = compute_features(facts, index, spec, impute=impute)
    actual = compute_features_small(facts, index, spec, impute=impute)
    assert actual.schema == expected.schema
    assert _bits(actual) == _bits(expected)


@pytest.fixture(scope="module")
def patients(hospital_lake) -> tuple[list[str], dict[str, pa.Table]]:
    facts = FactsStore(hospital_lake.lake_root).dataset().to_table(columns=list(ENGINE_COLUMNS))
    keys = sorted(set(facts.column("patient_key").to_pylist()))
    by_patient = {}
    for key in keys:
        by_patient[key] = facts.filter(pc.equal(facts.column("patient_key"), key))
    return keys, by_patient


def test_the_vector_kernel_equals_the_duckdb_kernel_on_the_synthetic_hospital(patients) -> None:
    keys, by_patient = patients
    specs = [EVERY_KIND, load_spec(demo_spec_path("deterioration")), load_spec(demo_spec_path("readmission"))]

    @settings(max_examples=30, deadline=None, database=None)
    @given(
        which=st.integers(0, len(keys) - 1),
        spec_number=st.sampled_from([0, 0, 1, 2]),
        picks=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["eff", "known", "end", "between"]),
                                 st.integers(-1, 1)), min_size=1, max_size=6),
        encounter_pick=st.integers(0, 1000),
        impute=st.booleans(),
    )
    def check(which: int, spec_number: int, picks: list, encounter_pick: int, impute: bool) -> None:
        facts = by_patient[keys[which]]
        effective = facts.column("effective_at").to_pylist()
        known = facts.column("known_at").to_pylist()
        ends = [end for end in facts.column("effective_end").to_pylist() if end is not None] or effective
        encounters = sorted({key for key in facts.column("encounter_key").to_pylist() if key is not None})
        times = []
        for fraction, anchor, nudge in picks:
            moments = {"eff": effective, "known": known, "end": ends}.get(anchor, effective)
            moment = sorted(moments)[min(int(fraction * len(moments)), len(moments) - 1)]
            if anchor == "between":
                moment = min(effective) + (max(known) - min(effective)) * fraction
            times.append(moment + timedelta(microseconds=nudge))
        encounter = encounters[encounter_pick % len(encounters)] if encounters and encounter_pick % 4 else None
        index = pa.table({
            "patient_key": [keys[which]] * len(times),
            "index_time": pa.array(times, TIMESTAMP),
            "encounter_key": [encounter] * len(times),
            "site": ["north"] * len(times),
        })
        _assert_same(facts, index, specs[spec_number], impute=impute)

    check()


def _hand_facts() -> list[dict]:
    rows = patient("p1", born=T0 - timedelta(days=365.25 * 60))
    rows += inpatient_stay("p1", "enc-1", hours(-24 * 40), hours(-24 * 36))
    rows += inpatient_stay("p1", "enc-2", hours(0), hours(72))
    rows += [fact("p1", "vital", "heart_rate", hours(h), value=v)
             for h, v in [(1, 80.1), (2, 91.7), (2, 91.7), (3.25, 100.3), (5, 63.0), (5, 70.0)]]
    rows.append(fact("p1", "vital", "heart_rate", hours(4), value=None, code="unreadable"))
    rows.append(fact("p1", "vital", "heart_rate", hours(4.5), value=300.0, status="entered-in-error"))
    rows.append(fact("p1", "lab", "lactate", hours(2), known=hours(7), value=4.2))
    rows.append(fact("p1", "lab", "lactate", hours(2), known=hours(9), value=2.2, source=rows[-1]["source_id"]))
    rows.append(fact("p1", "condition", "sepsis", hours(-30)))
    rows.append(fact("p1", "medication", "vasopressor", hours(1), end=hours(6), source="pressor-1"))
    rows.append(fact("p1", "medication", "vasopressor", hours(1), end=hours(6), source="pressor-1"))
    rows.append(fact("p1", "encounter", "encounter", hours(-24 * 10), code="EMER", encounter="ed-1",
                     source="ed-1", end=hours(-24 * 10 + 5)))
    rows.append(fact("p1", "outcome", "heart_rate", hours(3), value=1000.0))  # outcomes are never features
    return rows


@pytest.mark.parametrize("moment", [-1, 0, 1, 2, 3.25, 4, 5, 6, 7, 8, 9, 30, 72, 100])
def test_the_kernels_agree_at_the_boundaries_of_hand_built_facts(moment: float) -> None:
    facts = table(_hand_facts())
    index = pa.table({"patient_key": ["p1", "p1", "p2"], "index_time": pa.array([hours(moment)] * 3, TIMESTAMP),
                      "encounter_key": ["enc-2", None, "enc-2"], "site": ["north"] * 3})
    for impute in (True, False):
        _assert_same(facts, index, EVERY_KIND, impute=impute)


def test_the_current_encounter_is_the_inpatient_stay_in_progress() -> None:
    facts = facts_from_table(table(_hand_facts()))
    at = int(hours(10).timestamp() * 1_000_000)
    assert current_encounter(facts, at) == "enc-2"
    assert current_encounter(facts, int(hours(-24 * 10 + 1).timestamp() * 1_000_000)) == "ed-1"
    assert current_encounter(facts, int(hours(-24 * 20).timestamp() * 1_000_000)) is None
