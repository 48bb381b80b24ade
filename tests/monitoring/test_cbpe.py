"""CBPE recovers known performance under covariate shift, and (as stated) not under concept shift."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vitalops.monitoring.cbpe import Calibration, estimate
from vitalops.monitoring.stats import Distribution

THRESHOLD = 0.3


def _truth(p_true: np.ndarray, score: np.ndarray, outcomes: np.ndarray) -> dict[str, float]:
    flagged = score >= THRESHOLD
    tp = np.sum(flagged & (outcomes == 1))
    return {"auroc": roc_auc_score(outcomes, score), "sensitivity": tp / outcomes.sum(),
            "specificity": np.sum(~flagged & (outcomes == 0)) / np.sum(outcomes == 0),
            "ppv": tp / flagged.sum()}


def _population(rng: np.random.Generator, n: int, severity_mean: float) -> tuple[np.ndarray, np.ndarray]:
    """A model that over-predicts (its score is not the probability), on patients of a given severity."""
    severity = rng.normal(severity_mean, 1.0, n)
    p_true = 1 / (1 + np.exp(-(severity * 1.3 - 2.2)))
    score = np.round(1 / (1 + np.exp(-(severity - 1.2))), 3)  # rounded, as logged scores tie
    return score, (rng.random(n) < p_true).astype(np.int64)


@pytest.mark.parametrize("severity_mean", [0.0, 0.6])  # the reference population, then a sicker one
def test_cbpe_recovers_the_known_performance_when_only_the_population_moves(severity_mean):
    rng = np.random.default_rng(42)
    ref_score, ref_outcomes = _population(rng, 30_000, 0.0)
    calibration = Calibration.fit(ref_score, ref_outcomes)
    score, outcomes = _population(rng, 20_000, severity_mean)
    estimated = estimate(calibration, Distribution.from_values(score), THRESHOLD)
    truth = _truth(None, score, outcomes)
    assert estimated["auroc"] == pytest.approx(truth["auroc"], abs=0.015)
    for name in ("sensitivity", "specificity", "ppv"):
        assert estimated[name] == pytest.approx(truth[name], abs=0.03), name
    assert estimated["expected_events"] == pytest.approx(outcomes.sum(), rel=0.06)


def test_the_estimated_auroc_of_perfectly_calibrated_scores_is_their_expected_auroc():
    rng = np.random.default_rng(1)
    score = np.round(rng.beta(2, 5, 5000), 2)
    calibration = Calibration(np.array([0.0, 1.0]), np.array([0.0, 1.0]))  # the identity
    distribution = Distribution.from_values(score)
    estimated = estimate(calibration, distribution, THRESHOLD)
    # the average AUROC over outcome draws from the scores themselves
    draws = [roc_auc_score(rng.random(5000) < score, score) for _ in range(40)]
    assert estimated["auroc"] == pytest.approx(float(np.mean(draws)), abs=0.01)


def test_under_concept_shift_the_estimate_holds_while_the_truth_falls():
    rng = np.random.default_rng(3)
    ref_score, ref_outcomes = _population(rng, 30_000, 0.0)
    calibration = Calibration.fit(ref_score, ref_outcomes)
    score, _ = _population(rng, 20_000, 0.0)
    # a new protocol prevents most events among the high-risk patients: the same scores, fewer events
    outcomes = (rng.random(20_000) < np.where(score >= THRESHOLD, 0.05, 0.08)).astype(np.int64)
    estimated = estimate(calibration, Distribution.from_values(score), THRESHOLD)
    truth = _truth(None, score, outcomes)
    assert estimated["auroc"] > 0.75 and truth["auroc"] < 0.6  # what CBPE cannot see
    again = Calibration.from_dict(calibration.to_dict())
    assert estimate(again, Distribution.from_values(score), THRESHOLD) == estimated
