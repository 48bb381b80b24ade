"""The point-in-time kernel on small hand-timed facts: exact values, late facts, superseding."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pyarrow as pa
import pytest

from tests.features.fact_rows import T0, fact, hours, inpatient_stay, patient, table
from vitalops.features.definitions import DatasetSpec, spec_from_dict
from vitalops.features.engine import compute_features, register_index
from vitalops.features.facts_view import register_facts
from vitalops.features.labels import compute_labels

FEATURES = [
    {"name": "hr_last", "kind": "measurement", "concept": "heart_rate", "agg": "last", "window": "12h"},
    {"name": "hr_first", "kind": "measurement", "concept": "heart_rate", "agg": "first", "window": "12h"},
    {"name": "hr_mean", "kind": "measurement", "concept": "heart_rate", "agg": "mean", "window": "12h"},
    {"name": "hr_min", "kind": "measurement", "concept": "heart_rate", "agg": "min", "window": "12h"},
    {"name": "hr_slope", "kind": "measurement", "concept": "heart_rate", "agg": "slope", "window": "12h"},
    {"name": "hr_delta", "kind": "measurement", "concept": "heart_rate", "agg": "delta", "window": "12h"},
    {"name": "hr_since", "kind": "measurement", "concept": "heart_rate", "agg": "time_since_last",
     "window": "12h"},
    {"name": "hr_count", "kind": "measurement", "concept": "heart_rate", "agg": "count", "window": "12h"},
    {"name": "lactate_seen", "kind": "measurement", "concept": "lactate", "agg": "exists", "window": "12h"},
    {"name": "lactate_last", "kind": "measurement", "concept": "lactate", "agg": "last", "window": "12h",
     "impute": 1.0},
    {"name": "age", "kind": "age"},
    {"name": "female", "kind": "sex"},
    {"name": "diabetes", "kind": "condition", "concept": "type2_diabetes"},
    {"name": "sepsis_24h", "kind": "condition", "concept": "sepsis", "window": "24h"},
    {"name": "on_vancomycin", "kind": "medication", "concept": "vancomycin"},
    {"name": "vancomycin_orders_48h", "kind": "medication", "concept": "vancomycin", "mode": "count",
     "window": "48h"},
    {"name": "prior_inpatient_365d", "kind": "utilization", "encounter_class": "IMP", "window": "365d"},
    {"name": "length_of_stay", "kind": "length_of_stay"},
]


def _spec(features: list[dict] = FEATURES, label: dict | None = None) -> DatasetSpec:
    return spec_from_dict(
        {"name": "kernel", "cohort": {"schedule": "every", "every": "4h"},
         "label": label or {"kind": "outcome", "outcomes": [{"kind": "encounter", "concept": "icu_stay"}],
                            "horizon": "48h"},
         "features": features},
        source="kernel.yaml",
    )


def _index(*times, encounter: str = "enc-2") -> pa.Table:
    return pa.table({"patient_key": ["p1"] * len(times), "index_time": list(times),
                     "encounter_key": [encounter] * len(times), "site": ["north"] * len(times)})


def _facts() -> list[dict]:
    rows = patient("p1", born=T0 - timedelta(days=365.25 * 70))
    rows += inpatient_stay("p1", "enc-1", hours(-24 * 100), hours(-24 * 95))  # an earlier stay
    rows += inpatient_stay("p1", "enc-2", hours(0), hours(72))
    rows += [fact("p1", "vital", "heart_rate", hours(h), value=v) for h, v in [(1, 80.0), (3, 90.0), (5, 100.0)]]
    rows.append(fact("p1", "lab", "lactate", hours(2), known=hours(7), value=4.2))  # resulted 5 h late
    rows.append(fact("p1", "condition", "type2_diabetes", hours(-5000), known=hours(2)))
    rows.append(fact("p1", "condition", "sepsis", hours(-30)))
    rows.append(fact("p1", "medication", "vancomycin", hours(1), end=hours(6), source="vanc-1"))
    return rows


def test_values_at_an_index_time_are_exact() -> None:
    row = compute_features(table(_facts()), _index(hours(6)), _spec()).to_pylist()[0]
    assert row["hr_last"] == 100.0 and row["hr_first"] == 80.0 and row["hr_min"] == 80.0
    assert row["hr_mean"] == 90.0
    assert row["hr_slope"] == pytest.approx(5.0, abs=1e-12)  # 10 per 2 h
    assert row["hr_delta"] == 20.0 and row["hr_count"] == 3.0 and row["hr_since"] == 1.0
    assert row["lactate_seen"] == 0.0  # drawn at 2 h, not known until 7 h
    assert row["lactate_last"] == 1.0  # declared imputation
    assert row["age"] == pytest.approx(70.0 + 6 / (365.25 * 24))
    assert row["female"] == 1.0 and row["attr_sex"] == "female"
    assert row["diabetes"] == 1.0 and row["sepsis_24h"] == 0.0  # sepsis onset 36 h earlier
    assert row["on_vancomycin"] == 0.0 and row["vancomycin_orders_48h"] == 1.0  # ended at 6 h
    assert row["prior_inpatient_365d"] == 1.0  # the earlier stay, not the current one
    assert row["length_of_stay"] == 6.0


def test_missing_values_stay_missing_without_imputation() -> None:
    row = compute_features(table(_facts()), _index(hours(-1)), _spec(), impute=False).to_pylist()[0]
    assert row["hr_last"] is None and row["hr_mean"] is None and row["hr_slope"] is None
    assert row["lactate_last"] is None and row["hr_count"] == 0.0
    assert row["length_of_stay"] is None  # the stay has not begun as far as anyone knew


def test_a_fact_known_after_the_index_time_never_changes_the_row() -> None:
    spec = _spec()
    index = _index(hours(4), hours(6))
    before = compute_features(table(_facts()), index, spec)
    late = fact("p1", "vital", "heart_rate", hours(3.5), known=hours(6) + timedelta(microseconds=1), value=250.0)
    after = compute_features(table([*_facts(), late]), index, spec)
    assert after.equals(before)
    at_result_time = compute_features(table([*_facts(), late]), _index(hours(7)), spec).to_pylist()[0]
    assert at_result_time["hr_count"] == 4.0


def test_a_newer_version_supersedes_from_its_known_time() -> None:
    base = _facts()
    corrected = fact("p1", "vital", "heart_rate", hours(5), known=hours(8), value=110.0, source=base[-7]["source_id"])
    corrected["source_version"] = "2"
    rows = table([*base, corrected])
    spec = _spec()
    early, late = compute_features(rows, _index(hours(7), hours(9)), spec).to_pylist()
    assert early["hr_last"] == 100.0 and late["hr_last"] == 110.0
    assert late["hr_count"] == 3.0  # replaced, not added


def test_length_of_stay_uses_the_stay_as_known_then_not_the_discharge() -> None:
    spec = _spec([{"name": "los", "kind": "length_of_stay"}])
    los = compute_features(table(_facts()), _index(hours(70)), spec).column("los").to_pylist()
    assert los == [70.0]


def _labels(facts: list[dict], times: list, as_of_hours: float, label: dict) -> list[dict]:
    spec = _spec(label=label)
    con = duckdb.connect()
    register_facts(con, table(facts))
    register_index(con, _index(*times))
    as_of_us = int((hours(as_of_hours) - T0).total_seconds() * 1e6) + int(T0.timestamp() * 1e6)
    return compute_labels(con, spec.label, as_of_us).to_pylist()


ICU_OR_DEATH = {"kind": "outcome", "horizon": "48h",
                "outcomes": [{"kind": "encounter", "concept": "icu_stay"}, {"kind": "outcome", "concept": "death"}]}


def test_labels_use_only_the_horizon_after_the_index_and_record_when_known() -> None:
    icu = fact("p1", "encounter", "icu_stay", hours(30), known=hours(31), code="1027-2", encounter="enc-2",
               source="enc-2-icu")
    rows = [*_facts(), icu]
    labels = _labels(rows, [hours(-20), hours(4), hours(29), hours(30), hours(40)], 200, ICU_OR_DEATH)
    assert [row["label"] for row in labels] == [0, 1, 1, 0, 0]  # at 30 h the transfer is not in the future
    assert labels[1]["label_known_at"] == hours(31)
    assert labels[0]["label_known_at"] == hours(28)  # a negative is known at the end of its horizon


def test_labels_with_an_incomplete_horizon_are_censored() -> None:
    labels = _labels(_facts(), [hours(4), hours(60)], 100, ICU_OR_DEATH)
    assert labels[0]["label"] == 0
    assert labels[1]["label"] is None and labels[1]["label_known_at"] is None


def test_readmission_label_ignores_the_index_stay() -> None:
    readmission = {"kind": "readmission", "encounter_classes": ["IMP"], "horizon": "30d"}
    rows = [*_facts(), *inpatient_stay("p1", "enc-3", hours(72 + 24 * 10), hours(72 + 24 * 14))]
    labels = _labels(rows, [hours(72)], 24 * 60, readmission)
    assert labels[0]["label"] == 1
    labels = _labels(_facts(), [hours(72)], 24 * 60, readmission)
    assert labels[0]["label"] == 0
