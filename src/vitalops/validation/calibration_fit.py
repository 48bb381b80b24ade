"""The calibration line: a logistic regression of the outcome on the logit of the score."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

# Scores of exactly 0 or 1 have an infinite logit; they are clipped to this distance from the ends.
LOGIT_CLIP = 1e-12
_MAX_ITERATIONS = 100
_TOLERANCE = 1e-10


def logit(scores: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[LOGIT_CLIP, 1 - LOGIT_CLIP]``."""
    clipped = np.clip(scores, LOGIT_CLIP, 1 - LOGIT_CLIP)
    logits: np.ndarray = np.log(clipped) - np.log1p(-clipped)
    return logits


def fit_calibration_line(outcomes: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood ``(intercept, slope)`` of ``y ~ intercept + slope * logit(score)``.

    Unpenalised, as ``LogisticRegression(penalty=None)`` fits it. Returns ``(nan, nan)`` when
    the line does not exist: one outcome class only, a constant score, or separation.
    """
    x = logit(scores)
    y = outcomes.astype(np.float64)
    if y.min() == y.max() or x.min() == x.max():
        return float("nan"), float("nan")
    mean = y.mean()
    intercept, slope = float(np.log(mean / (1 - mean))), 0.0
    for _ in range(_MAX_ITERATIONS):
        eta = intercept + slope * x
        fitted = expit(eta)
        weight = fitted * (1.0 - fitted)
        residual = y - fitted
        # Plain sums, not BLAS dot products: those spawn threads that stall on a busy machine.
        weighted_x = weight * x
        grad_a, grad_b = residual.sum(), (residual * x).sum()
        h_aa, h_ab, h_bb = weight.sum(), weighted_x.sum(), (weighted_x * x).sum()
        determinant = h_aa * h_bb - h_ab * h_ab
        if not np.isfinite(determinant) or determinant <= 0:
            return float("nan"), float("nan")
        step_a = (h_bb * grad_a - h_ab * grad_b) / determinant
        step_b = (h_aa * grad_b - h_ab * grad_a) / determinant
        intercept, slope = intercept + step_a, slope + step_b
        if abs(step_a) + abs(step_b) < _TOLERANCE * (1 + abs(intercept) + abs(slope)):
            break
    else:
        return float("nan"), float("nan")
    if not (np.isfinite(intercept) and np.isfinite(slope)):
        return float("nan"), float("nan")
    return float(intercept), float(slope)
