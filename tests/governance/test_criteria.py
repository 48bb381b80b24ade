from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from vitalops.governance.criteria import acceptance, non_inferiority, ratios, subgroup_ratios
from vitalops.governance.pccp import RatioBounds
from vitalops.validation.metrics import point_metrics


def test_groups_that_cannot_be_judged_are_not_evaluable_rather_than_passed() -> None:
    rng = np.random.default_rng(3)
    groups = np.array(["a"] * 400 + ["b"] * 200 + ["c"] * 10, dtype=object)
    labels = np.concatenate([rng.integers(0, 2, 400), np.zeros(200, dtype=int), rng.integers(0, 2, 10)])
    scores = rng.random(labels.shape[0])
    bounds = RatioBounds(metric="auroc", ratio_min=0.8, ratio_max=1.25, small_group_min=30)
    by_name = {c.name: c for c in ratios("site", groups, labels, scores, 0.5, bounds, reference=None)}
    one_class, small = by_name["site=b.auroc_ratio"], by_name["site=c.auroc_ratio"]
    assert not one_class.evaluable and one_class.passed and "one outcome class" in one_class.note
    assert not small.evaluable and small.bound == "suppressed"


def _clustered(seed: int) -> dict[str, np.ndarray]:
    """40 patients x 10 rows; two models that see the same latent risk through different noise."""
    rng = np.random.default_rng(seed)
    outcome = rng.binomial(1, 0.35, 40)
    latent = rng.normal(1.2 * outcome, 1.0)
    patient = np.repeat(np.arange(40), 10)
    return {
        "y": outcome[patient],
        "keys": np.char.add("p", patient.astype(str)),
        "champion": expit(latent[patient] + rng.normal(0, 0.4, patient.shape[0]) - 1),
        "candidate": expit(latent[patient] + rng.normal(0, 0.6, patient.shape[0]) - 1),
    }


def test_non_inferiority_is_judged_on_the_paired_interval_not_two_point_estimates() -> None:
    cohort = _clustered(1)
    drop = (
        point_metrics(cohort["y"], cohort["champion"], 0.5)["auroc"]
        - point_metrics(cohort["y"], cohort["candidate"], 0.5)["auroc"]
    )
    assert 0 < drop <= 0.03  # the point estimates alone would pass a 0.03 margin
    criterion = non_inferiority(
        cohort["y"], cohort["candidate"], cohort["champion"], 0.03, patient_keys=cohort["keys"], n_resamples=200, seed=1
    )
    assert not criterion.passed
    assert criterion.estimate == pytest.approx(-drop, abs=1e-6)
    assert criterion.low is not None and criterion.high is not None and criterion.low < -0.03 < criterion.high
    assert criterion.value == criterion.low
    assert criterion.unit.startswith("40 patients resampled")
    # A champion compared with itself differs by exactly zero on every resample: it passes any margin.
    same = non_inferiority(
        cohort["y"], cohort["champion"], cohort["champion"], 0.0, patient_keys=cohort["keys"], n_resamples=50, seed=1
    )
    assert same.passed and same.low == same.high == 0.0


def test_acceptance_resamples_patients_so_a_row_bootstrap_no_longer_passes_it() -> None:
    cohort = _clustered(3)
    bound = {"auroc_low": 0.6}
    by_rows = acceptance(cohort["y"], cohort["candidate"], 0.5, bound, n_resamples=200, seed=1)[0]
    by_patients = acceptance(
        cohort["y"], cohort["candidate"], 0.5, bound, n_resamples=200, seed=1, patient_keys=cohort["keys"]
    )[0]
    assert by_rows.passed and by_rows.unit.startswith("rows resampled")
    assert not by_patients.passed and by_patients.unit.startswith("40 patients resampled")
    assert by_patients.low is not None and by_patients.low < 0.6 <= (by_rows.low or 0)


def test_ratio_criteria_record_a_patient_resampled_interval() -> None:
    cohort = _clustered(2)
    sex = np.where(np.arange(400) % 20 < 10, "female", "male").astype(object)
    bounds = RatioBounds(metric="auroc", ratio_min=0.5, ratio_max=2.0, attributes=["sex"], small_group_min=30)
    [row] = subgroup_ratios(
        {"sex": sex}, cohort["y"], cohort["candidate"], 0.5, bounds, patient_keys=cohort["keys"], n_resamples=100
    )
    assert row.low is not None and row.high is not None and row.low <= (row.estimate or 0) <= row.high
    assert row.unit.startswith("40 patients resampled")


def test_a_metric_the_rows_cannot_define_is_not_evaluable_never_failed_or_passed() -> None:
    rng = np.random.default_rng(5)
    labels = np.zeros(300, dtype=int)  # a site whose frozen rows have no outcome
    candidate, champion = rng.random(300), rng.random(300)
    (floor,) = acceptance(labels, candidate, 0.5, {"auroc_low": 0.7}, n_resamples=50, seed=1)
    assert not floor.evaluable and not floor.passed and "one outcome class" in floor.note
    drop = non_inferiority(labels, candidate, champion, 0.02, n_resamples=50, seed=1)
    assert not drop.evaluable and not drop.passed and "undefined" in drop.note
    (unknown,) = acceptance(rng.integers(0, 2, 300), candidate, 0.5, {"made_up_low": 0.7}, n_resamples=50, seed=1)
    assert unknown.evaluable and not unknown.passed  # a plan naming no real metric is a failure of the plan
