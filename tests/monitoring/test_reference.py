"""The reference a window is compared with. CBPE's calibration is fitted on rows the version was
not trained on (its temporal test split): fitted on the training rows' own scores it is as
overconfident as the model is overfitted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from vitalops.monitoring.cbpe import Calibration, estimate
from vitalops.monitoring.reference import Reference, _reference_rows, compute_reference
from vitalops.monitoring.stats import Distribution

NAMES = ["x"]


def _rows(rng: np.random.Generator, n: int, *, overfit: bool) -> tuple[np.ndarray, np.ndarray]:
    """(scores, outcomes): outcomes drawn from a true risk; an overfitted model's scores on its own
    training rows lean towards the outcome it has seen."""
    risk = rng.uniform(0.02, 0.6, n)
    outcomes = (rng.random(n) < risk).astype(np.int64)
    scores = np.clip(risk + (0.35 * (outcomes - 0.5) if overfit else 0.0), 0.001, 0.999)
    return scores, outcomes


def test_the_calibration_is_fitted_on_the_held_out_rows_and_estimates_nearer_the_truth() -> None:
    rng = np.random.default_rng(5)
    train_scores, train_outcomes = _rows(rng, 4000, overfit=True)
    test_scores, test_outcomes = _rows(rng, 4000, overfit=False)
    features = rng.normal(size=(4000, 1))
    common = {"dataset_fingerprint": "f" * 64, "source": "training split", "outcomes": train_outcomes}
    held_out = compute_reference(features, NAMES, train_scores, 0.3, **common,
                                 calibrate_on=(test_scores, test_outcomes, "temporal test split"))
    in_sample = compute_reference(features, NAMES, train_scores, 0.3, **common)
    assert held_out.calibration_source == "temporal test split" and in_sample.calibration_source == "training split"
    assert held_out.calibration.to_dict() == Calibration.fit(test_scores, test_outcomes).to_dict()
    # a window of new patients, scored as the test rows were: the held-out calibration's estimate is
    # near the measured truth, the in-sample one well above it
    window_scores, window_outcomes = _rows(rng, 4000, overfit=False)
    from sklearn.metrics import roc_auc_score

    truth = roc_auc_score(window_outcomes, window_scores)
    window = Distribution.from_values(window_scores)
    assert abs(estimate(held_out.calibration, window, 0.3)["auroc"] - truth) < 0.02
    assert estimate(in_sample.calibration, window, 0.3)["auroc"] > truth + 0.1
    # stored and read back, the source is kept
    restored = Reference.from_document(held_out.to_document(), "digest")
    assert restored.calibration_source == "temporal test split"
    assert restored.calibration.to_dict() == held_out.calibration.to_dict()


def test_held_out_rows_with_one_outcome_class_fall_back_to_the_reference_rows() -> None:
    rng = np.random.default_rng(6)
    scores, outcomes = _rows(rng, 500, overfit=False)
    reference = compute_reference(rng.normal(size=(500, 1)), NAMES, scores, 0.3, dataset_fingerprint="f" * 64,
                                  source="training split", outcomes=outcomes,
                                  calibrate_on=(scores[:50], np.zeros(50, dtype=np.int64), "temporal test split"))
    assert reference.calibration_source == "training split"
    assert reference.calibration.to_dict() == Calibration.fit(scores, outcomes).to_dict()


def test_the_reference_rows_are_the_training_split_and_the_test_split_is_returned_beside_them() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    table = pa.table({"patient_key": [f"p{i}" for i in range(100)], "site": ["north"] * 100,
                      "index_time": pa.array([start + timedelta(hours=i) for i in range(100)],
                                             pa.timestamp("us", tz="UTC")),
                      "label": [i % 4 == 0 for i in range(100)], "x": [float(i) for i in range(100)]})
    table = table.set_column(3, "label", table["label"].cast(pa.int64()))
    rows, source, test = _reference_rows(table, NAMES, {"split": {"train_fraction": 0.7}})
    assert source == "training split" and len(rows) == 70 and len(test) == 30
    assert rows.index_times.max() < test.index_times.min()
    rows, source, test = _reference_rows(table, NAMES, {})
    assert source == "labelled rows" and len(rows) == 100 and test is None

