from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve as sk_calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, confusion_matrix, roc_auc_score

from tests.validation.cohort import scored_cohort
from vitalops.errors import InvalidInput
from vitalops.validation.calibration_fit import logit
from vitalops.validation.metrics import (
    calibration_curve,
    expected_calibration_error,
    net_benefit,
    point_metrics,
    sorted_sample,
)


@pytest.mark.parametrize("rounded", [False, True])
def test_point_metrics_agree_with_scikit_learn(rounded: bool) -> None:
    cohort = scored_cohort(4000, rounded=rounded)
    y, score = cohort["y"], cohort["score"]
    metrics = point_metrics(y, score, 0.25)
    assert metrics["auroc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert metrics["auprc"] == pytest.approx(average_precision_score(y, score), abs=1e-12)
    assert metrics["brier"] == pytest.approx(brier_score_loss(y, score), abs=1e-12)
    tn, fp, fn, tp = confusion_matrix(y, score >= 0.25).ravel()
    assert metrics["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert metrics["specificity"] == pytest.approx(tn / (tn + fp))
    assert metrics["ppv"] == pytest.approx(tp / (tp + fp))
    assert metrics["npv"] == pytest.approx(tn / (tn + fn))
    assert metrics["flag_rate"] == pytest.approx((tp + fp) / len(y))
    assert metrics["n"] == len(y) and metrics["positives"] == y.sum()
    fit = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(logit(score)[:, None], y)
    assert metrics["calibration_intercept"] == pytest.approx(fit.intercept_[0], abs=1e-5)
    assert metrics["calibration_slope"] == pytest.approx(fit.coef_[0, 0], abs=1e-5)
    assert metrics["ece"] == pytest.approx(expected_calibration_error(y, score), abs=1e-12)


def test_resample_kernel_matches_scikit_learn_with_weights() -> None:
    cohort = scored_cohort(2000, rounded=True)
    sample, order = sorted_sample(cohort["y"], cohort["score"], 0.3)
    rng = np.random.default_rng(1)
    counts = np.bincount(rng.integers(0, 2000, 2000), minlength=2000).astype(float)
    drawn = sample.metrics(counts[:, None])
    y, score = cohort["y"][order], cohort["score"][order]
    assert drawn["auroc"][0] == pytest.approx(roc_auc_score(y, score, sample_weight=counts))
    assert drawn["auprc"][0] == pytest.approx(average_precision_score(y, score, sample_weight=counts))
    assert drawn["brier"][0] == pytest.approx(brier_score_loss(y, score, sample_weight=counts))
    expanded = np.repeat(np.arange(2000), counts.astype(int))
    assert drawn["sensitivity"][0] == pytest.approx(point_metrics(y[expanded], score[expanded], 0.3)["sensitivity"])


def test_calibration_curve_agrees_with_scikit_learn() -> None:
    cohort = scored_cohort(3000)
    for strategy in ("quantile", "uniform"):
        ours = calibration_curve(cohort["y"], cohort["score"], n_bins=10, strategy=strategy)
        prob_true, prob_pred = sk_calibration_curve(cohort["y"], cohort["score"], n_bins=10, strategy=strategy)
        assert [row["observed_rate"] for row in ours] == pytest.approx(list(prob_true))
        assert [row["mean_predicted"] for row in ours] == pytest.approx(list(prob_pred))
        assert sum(row["count"] for row in ours) == 3000


def test_ece_uses_equal_count_bins() -> None:
    cohort = scored_cohort(3000)
    bins = calibration_curve(cohort["y"], cohort["score"])
    expected = sum(row["count"] * abs(row["mean_predicted"] - row["observed_rate"]) for row in bins) / 3000
    assert expected_calibration_error(cohort["y"], cohort["score"]) == pytest.approx(expected)
    assert max(row["count"] for row in bins) - min(row["count"] for row in bins) <= 1


def test_net_benefit_follows_the_decision_curve_formula() -> None:
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    score = np.array([0.9, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05])
    [point] = net_benefit(y, score, [0.5])
    # Flagged at 0.5: 0.9 (TP), 0.8 (FP), 0.6 (TP) -> 2/8 - 1/8 * 1
    assert point["model"] == pytest.approx(2 / 8 - 1 / 8)
    assert point["treat_all"] == pytest.approx(3 / 8 - 5 / 8)
    assert point["treat_none"] == 0.0


def test_undefined_metrics_are_nan_not_errors() -> None:
    metrics = point_metrics([0, 0, 0], [0.1, 0.2, 0.3], 0.5)
    assert np.isnan(metrics["auroc"]) and np.isnan(metrics["ppv"]) and np.isnan(metrics["sensitivity"])


@pytest.mark.parametrize(
    ("y", "score"),
    [([0, 1], [0.1]), ([0, 2], [0.1, 0.2]), ([0, 1], [0.1, 1.5]), ([0, 1], [0.1, float("nan")]), ([], [])],
)
def test_bad_arrays_are_refused(y: list[float], score: list[float]) -> None:
    with pytest.raises(InvalidInput):
        point_metrics(y, score, 0.5)
