"""Outcomes of logged predictions from the lake: a prediction made at a training row's index time
gets that row's label, for both demo label kinds (an outcome within 48 hours; a readmission within
30 days, which needs the index encounter); a horizon not yet passed gives no label, and neither does
a prediction without a patient key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.features.conftest import demo_sets, hospital_lake  # noqa: F401  (session fixtures)
from vitalops.features import DEMO_SPECS
from vitalops.features.definitions import duration_us
from vitalops.monitoring.lake_labels import lake_known_until, lake_outcomes

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def _predictions(rows: pa.Table, version: int = 1) -> pa.Table:
    """One logged prediction per training row, made at its index time for its patient."""
    return pa.table({
        "prediction_id": [f"p{i}" for i in range(rows.num_rows)],
        "version": pa.array([version] * rows.num_rows, pa.int64()),
        "patient_key": rows["patient_key"],
        "at": rows["index_time"],
    })


@pytest.mark.parametrize("name", DEMO_SPECS)
def test_a_prediction_at_a_training_rows_index_time_gets_its_label(name, hospital_lake, demo_sets):  # noqa: F811
    training = demo_sets[name]
    rows = training.table
    found = lake_outcomes(hospital_lake.lake_root, {1: training.spec}, _predictions(rows), now=FAR_FUTURE)
    labels = rows["label"].to_pylist()
    known = rows["label_known_at"].to_pylist()
    expected = {f"p{i}": (when, int(label)) for i, (label, when) in enumerate(zip(labels, known, strict=True))
                if label is not None}
    assert found == expected
    positives = sum(outcome for _, outcome in found.values())
    assert 0 < positives < len(found)  # both classes occur, so the match is not trivial


def test_a_horizon_not_yet_passed_gives_no_label(hospital_lake, demo_sets):  # noqa: F811
    training = demo_sets["deterioration"]
    rows = training.table.filter(pc.is_valid(training.table["label"]))
    predictions = _predictions(rows)
    times = rows["index_time"].to_pylist()
    now = sorted(times)[len(times) // 2]
    horizon = timedelta(microseconds=duration_us(training.spec.label.horizon))
    found = lake_outcomes(hospital_lake.lake_root, {1: training.spec}, predictions, now=now)
    passed = {f"p{i}" for i, at in enumerate(times) if at + horizon <= now}
    assert found and set(found) <= passed
    # Known as the lake knew it at ``now``: every label known by then.
    assert all(known_at <= now for known_at, _ in found.values())


def test_only_the_versions_with_definitions_and_rows_with_a_patient_key_are_labelled(hospital_lake, demo_sets):  # noqa: F811
    training = demo_sets["deterioration"]
    rows = training.table.filter(pc.is_valid(training.table["label"])).slice(0, 50)
    keyed = _predictions(rows)
    unkeyed = keyed.set_column(2, "patient_key", pa.nulls(rows.num_rows, pa.string()))
    other = _predictions(rows, version=2)
    other = other.set_column(0, "prediction_id", pa.array([f"q{i}" for i in range(rows.num_rows)]))
    assert lake_outcomes(hospital_lake.lake_root, {1: training.spec}, unkeyed, now=FAR_FUTURE) == {}
    found = lake_outcomes(hospital_lake.lake_root, {1: training.spec}, pa.concat_tables([keyed, other]),
                          now=FAR_FUTURE)
    assert set(found) == {f"p{i}" for i in range(rows.num_rows)}


def test_an_empty_or_missing_lake_labels_nothing(tmp_path, demo_sets):  # noqa: F811
    training = demo_sets["deterioration"]
    assert lake_known_until(str(tmp_path / "lake")) is None
    predictions = _predictions(training.table.slice(0, 5))
    assert lake_outcomes(str(tmp_path / "lake"), {1: training.spec}, predictions, now=FAR_FUTURE) == {}
