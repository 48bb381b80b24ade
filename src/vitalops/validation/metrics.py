"""Point estimates of the clinical validation metrics (no intervals; see ``bootstrap``).

Every value agrees with scikit-learn on the same data: ``roc_auc_score``,
``average_precision_score``, ``brier_score_loss``, ``confusion_matrix`` rates,
``calibration_curve`` and an unpenalised ``LogisticRegression`` of the outcome on the logit of
the score. Definitions are in ``vitalops.validation.kernels``. A metric that is undefined on
the data (AUROC with one outcome class, PPV with nobody flagged) is NaN here and None in JSON.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np

from vitalops.errors import InvalidInput
from vitalops.validation.inputs import outcomes_and_scores
from vitalops.validation.kernels import RESAMPLED_METRICS, SortedSample, quantile_bin_bounds

#: The point metrics: every metric the bootstrap resamples, plus the two counts.
METRIC_NAMES = (*RESAMPLED_METRICS, "n", "positives")


def sorted_sample(
    outcomes: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    *,
    net_benefit_thresholds: np.ndarray | None = None,
) -> tuple[SortedSample, np.ndarray]:
    """The sample sorted by score (stable) and the sorting order."""
    order = np.argsort(scores, kind="stable")
    sample = SortedSample(
        outcomes[order],
        scores[order],
        threshold=threshold,
        net_benefit_thresholds=net_benefit_thresholds,
    )
    return sample, order


def point_metrics(y_true: Any, y_score: Any, threshold: float) -> dict[str, float]:
    """AUROC, AUPRC, Brier, calibration intercept and slope, ECE, and at ``threshold``
    (flag when ``score >= threshold``) sensitivity, specificity, PPV, NPV and flag rate; also
    prevalence, ``n`` and ``positives``. Undefined values are NaN.

    Raises InvalidInput for bad arrays (see ``inputs.outcomes_and_scores``).
    """
    outcomes, scores = outcomes_and_scores(y_true, y_score)
    sample, _ = sorted_sample(outcomes, scores, float(threshold))
    return point_metrics_of(sample)


def point_metrics_of(sample: SortedSample) -> dict[str, float]:
    """Point metrics of an already sorted sample; the calibration line is the full fit."""
    values = {name: float(array[0]) for name, array in _quiet_metrics(sample).items()}
    values["calibration_intercept"], values["calibration_slope"] = sample.calibration
    values["n"] = float(sample.n)
    values["positives"] = float(sample.positions.shape[0])
    return {name: values[name] for name in METRIC_NAMES}


def _quiet_metrics(sample: SortedSample) -> dict[str, np.ndarray]:
    counts = np.zeros((sample.n_columns, 1))
    counts[sample.columns] = 1.0
    return {name: array for name, array in sample.metrics(counts).items() if array.ndim == 1}


class CalibrationRow(TypedDict):
    """One non-empty bin of ``calibration_curve``."""

    bin: int
    mean_predicted: float
    observed_rate: float
    count: int


def calibration_curve(
    y_true: Any, y_score: Any, n_bins: int = 10, strategy: str = "quantile"
) -> list[CalibrationRow]:
    """Observed outcome rate against mean predicted risk per bin, non-empty bins only.

    ``strategy="quantile"`` makes equal-count bins from the score percentiles, ``"uniform"``
    equal-width bins over [0, 1]; rows are assigned to bins as scikit-learn's
    ``calibration_curve`` assigns them, so its ``prob_pred``/``prob_true`` equal our
    ``mean_predicted``/``observed_rate``. Raises InvalidInput for bad arrays or arguments.
    """
    outcomes, scores = outcomes_and_scores(y_true, y_score)
    if n_bins < 1:
        raise InvalidInput("n_bins must be at least 1")
    if strategy == "quantile":
        edges = np.percentile(scores, np.linspace(0.0, 1.0, n_bins + 1) * 100.0)
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise InvalidInput("calibration strategy must be 'quantile' or 'uniform'")
    bin_ids = np.searchsorted(edges[1:-1], scores)
    counts = np.bincount(bin_ids, minlength=n_bins)
    score_sums = np.bincount(bin_ids, weights=scores, minlength=n_bins)
    positive_sums = np.bincount(bin_ids, weights=outcomes.astype(np.float64), minlength=n_bins)
    return [
        {
            "bin": int(index),
            "mean_predicted": float(score_sums[index] / counts[index]),
            "observed_rate": float(positive_sums[index] / counts[index]),
            "count": int(counts[index]),
        }
        for index in np.flatnonzero(counts)
    ]


def expected_calibration_error(y_true: Any, y_score: Any, n_bins: int = 10) -> float:
    """``sum_b |scores summed in b - positives in b| / n`` over equal-count (quantile) bins."""
    outcomes, scores = outcomes_and_scores(y_true, y_score)
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_outcomes = scores[order], outcomes[order].astype(np.float64)
    bounds = quantile_bin_bounds(sorted_scores, n_bins)
    gaps = [
        abs(sorted_scores[a:b].sum() - sorted_outcomes[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return float(np.sum(gaps) / scores.shape[0])


def net_benefit(y_true: Any, y_score: Any, thresholds: Any) -> list[dict[str, float]]:
    """The decision curve: net benefit of the model, of treating all and of treating none.

    At threshold probability ``pt`` (flag when ``score >= pt``):
    ``NB = TP/n - FP/n * pt / (1 - pt)``; treat-all uses everyone flagged; treat-none is 0.
    Raises InvalidInput for bad arrays or a threshold outside [0, 1).
    """
    outcomes, scores = outcomes_and_scores(y_true, y_score)
    points = np.asarray(thresholds, dtype=np.float64).ravel()
    if points.shape[0] and (not np.all(np.isfinite(points)) or points.min() < 0 or points.max() >= 1):
        raise InvalidInput("decision-curve thresholds must be probabilities in [0, 1)")
    n = scores.shape[0]
    prevalence = float(outcomes.mean())
    curve = []
    for point in points:
        flagged = scores >= point
        true_positives = float(np.count_nonzero(flagged & (outcomes == 1)))
        false_positives = float(np.count_nonzero(flagged & (outcomes == 0)))
        odds = point / (1.0 - point)
        curve.append(
            {
                "threshold": float(point),
                "model": float(true_positives / n - false_positives / n * odds),
                "treat_all": float(prevalence - (1.0 - prevalence) * odds),
                "treat_none": 0.0,
            }
        )
    return curve
