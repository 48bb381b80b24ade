"""Performance before the labels arrive: confidence-based performance estimation (CBPE).

The version's scores are calibrated where outcomes are known, on rows it was not trained on (its
temporal test split; see ``monitoring.reference``), with
isotonic regression (``sklearn.isotonic.IsotonicRegression``, increasing, clipped to [0, 1] and
to the reference's score range). In a window without labels, each prediction's calibrated
probability p is the expected value of its outcome, so the expected confusion matrix at the
version's threshold is: TP = sum of p over flagged predictions, FP = sum of (1 - p) over flagged,
FN = sum of p over unflagged, TN = sum of (1 - p) over unflagged; sensitivity, specificity and PPV
follow. The expected ROC curve has, at each score, TPR = (sum of p at or above it) / (sum of p)
and FPR likewise with 1 - p; the estimated AUROC is its trapezoidal area (ties in the score form
one step, as for the measured AUROC).

The assumption, stated with every estimate: **no concept shift**. The estimate follows a change in
who is scored (covariate shift: a sicker population gets higher scores and, by the reference's
calibration, more events), but not a change in what a score means (a new protocol that prevents
the outcome, a changed label definition). Then the estimate holds while the measured performance
falls once labels mature, which is why both are kept side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vitalops.monitoring.stats import Distribution

ASSUMPTION = "no concept shift: P(outcome | score) in the window is the reference's (isotonic fit)"


@dataclass(frozen=True)
class Calibration:
    """An isotonic map from score to the probability of the outcome, as its step points."""

    scores: np.ndarray
    probabilities: np.ndarray

    @classmethod
    def fit(cls, scores: np.ndarray, outcomes: np.ndarray) -> Calibration:
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        model.fit(np.asarray(scores, dtype=np.float64), np.asarray(outcomes, dtype=np.float64))
        return cls(np.asarray(model.X_thresholds_, dtype=np.float64), np.asarray(model.y_thresholds_,
                                                                                   dtype=np.float64))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """The calibrated probabilities (linear between the step points, clipped outside, as sklearn's)."""
        result: np.ndarray = np.interp(np.asarray(scores, dtype=np.float64), self.scores, self.probabilities)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {"scores": self.scores.tolist(), "probabilities": self.probabilities.tolist()}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Calibration:
        return cls(np.asarray(document["scores"], dtype=np.float64),
                   np.asarray(document["probabilities"], dtype=np.float64))


def estimate(calibration: Calibration, scores: Distribution, threshold: float) -> dict[str, float]:
    """Expected AUROC, sensitivity, specificity, PPV, flag rate and events of a window's scores
    (their value counts); NaN where undefined (no expected events, nothing flagged)."""
    values, counts = scores.values, scores.counts
    if counts.sum() == 0:
        return {name: float("nan") for name in ("auroc", "sensitivity", "specificity", "ppv", "flag_rate",
                                                 "expected_events")}
    p = calibration(values)
    events, non_events = counts * p, counts * (1.0 - p)
    flagged = values >= threshold
    tp, fp = events[flagged].sum(), non_events[flagged].sum()
    fn, tn = events[~flagged].sum(), non_events[~flagged].sum()
    # the expected ROC curve from the highest score down; each distinct score is one step
    order = np.argsort(-values, kind="stable")
    tpr = np.concatenate([[0.0], np.cumsum(events[order])]) / max(events.sum(), 1e-300)
    fpr = np.concatenate([[0.0], np.cumsum(non_events[order])]) / max(non_events.sum(), 1e-300)
    auroc = float(np.trapezoid(tpr, fpr)) if events.sum() > 0 and non_events.sum() > 0 else float("nan")
    return {
        "auroc": auroc,
        "sensitivity": float(tp / (tp + fn)) if tp + fn > 0 else float("nan"),
        "specificity": float(tn / (tn + fp)) if tn + fp > 0 else float("nan"),
        "ppv": float(tp / (tp + fp)) if tp + fp > 0 else float("nan"),
        "flag_rate": float(counts[flagged].sum() / counts.sum()),
        "expected_events": float(events.sum()),
    }
