"""The calibration line: a logistic regression of the outcome on the logit of the score."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

# Scores of exactly 0 or 1 have an infinite logit; they are clipped to this distance from the ends.
LOGIT_CLIP = 1e-12
_MAX_ITERATIONS = 100
_TOLERANCE = 1e-10
# A resample's refit stops after a Newton step smaller than ``stop`` relative to its line. Newton
# converges quadratically, so the line is then within about stop squared (times a constant of the
# order of the spread of the logits) of the maximum. Small samples, cheap to refit, go to 1e-7
# (about 1e-14); large ones, where one or two steps from the one-step estimate finish the fit,
# to 1e-4 (about 1e-8, still five orders of magnitude below an interval's width at that size).
STOP_SMALL = 1e-7
STOP_LARGE = 1e-4


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


class CalibrationRefit:
    """Refits the calibration line of a sample's resamples: the rows ``(x = logit(score), outcome)``
    weighted by each resample's counts, by maximum likelihood.

    Newton's method from a start (one per resample), all resamples of a call at once, each dropped
    from the work once its step falls below ``stop`` relative to its line (Newton converges
    quadratically, so the line is then within about the square of that step of the maximum). A
    resample whose line does not exist (one outcome class, one distinct score, separation) or that
    does not converge gets ``(nan, nan)``.
    """

    def __init__(self, x: np.ndarray, outcomes: np.ndarray, *, stop: float = STOP_SMALL) -> None:
        self.stop = stop
        self.defined = bool(x.shape[0] > 0 and x.min() < x.max())
        # Rows 1, x, x^2: one pass of einsum gives the weighted sums of Newton's equations.
        self.powers = np.stack([np.ones_like(x), x, x * x])
        self.positive = np.flatnonzero(outcomes == 1)

    def fit(
        self,
        weights: np.ndarray,
        start: tuple[np.ndarray, np.ndarray],
        sums: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(intercepts, slopes)`` of each row of ``weights`` (``(resamples, rows)``, C-ordered).

        ``sums`` are each resample's weighted positives, weighted ``x`` of the positives and total
        weight, when the caller has them (they are summed here otherwise).
        """
        resamples = weights.shape[0]
        intercepts = np.full(resamples, np.nan)
        slopes = np.full(resamples, np.nan)
        if not self.defined:
            return intercepts, slopes
        x = self.powers[1]
        if sums is None:
            positive_weights = weights[:, self.positive]
            sums = (positive_weights.sum(axis=1), positive_weights @ x[self.positive], weights.sum(axis=1))
        target_a, target_b, total = sums
        active = np.flatnonzero((target_a > 0) & (target_a < total))
        intercept, slope = start[0][active], start[1][active]
        for _ in range(_MAX_ITERATIONS):
            if active.shape[0] == 0:
                break
            rows = weights if active.shape[0] == resamples else weights[active]
            # fitted = 1 / (1 + exp(-(a + b x))), built in place: np.exp is several times faster than expit.
            fitted = np.multiply.outer(-slope, x)
            fitted -= intercept[:, None]
            with np.errstate(over="ignore"):
                np.exp(fitted, out=fitted)
            fitted += 1.0
            np.divide(1.0, fitted, out=fitted)
            weighted_fitted = rows * fitted
            fitted_sums = np.einsum("rn,kn->rk", weighted_fitted, self.powers[:2])
            # weights * fitted * (1 - fitted), reusing the buffer of ``fitted``.
            fitted *= weighted_fitted
            np.subtract(weighted_fitted, fitted, out=fitted)
            curvature = np.einsum("rn,kn->rk", fitted, self.powers)
            grad_a, grad_b = target_a[active] - fitted_sums[:, 0], target_b[active] - fitted_sums[:, 1]
            h_aa, h_ab, h_bb = curvature[:, 0], curvature[:, 1], curvature[:, 2]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                determinant = h_aa * h_bb - h_ab * h_ab
                step_a = (h_bb * grad_a - h_ab * grad_b) / determinant
                step_b = (h_aa * grad_b - h_ab * grad_a) / determinant
                intercept = intercept + step_a
                slope = slope + step_b
                size = np.abs(step_a) + np.abs(step_b)
            failed = ~(np.isfinite(determinant) & (determinant > 0) & np.isfinite(intercept) & np.isfinite(slope))
            converged = ~failed & (size < self.stop * (1 + np.abs(intercept) + np.abs(slope)))
            intercepts[active[converged]] = intercept[converged]
            slopes[active[converged]] = slope[converged]
            keep = ~(failed | converged)
            active, intercept, slope = active[keep], intercept[keep], slope[keep]
        return intercepts, slopes
