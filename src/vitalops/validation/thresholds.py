"""Operating thresholds: how a validation turns a risk score into an alert.

A patient is flagged when ``score >= threshold``. Three rules choose the threshold:

- ``sensitivity``: the highest threshold whose sensitivity on the data is at least the target
  (a value in (0, 1]); the flag rate is then as low as the target allows.
- ``alert_budget``: the lowest threshold whose alerts stay within ``value`` alerts per 100
  patient-days (one row is one scored prediction, an alert when flagged); ``patient_days`` is
  the follow-up the rows cover. Tied scores are never split, so the budget is never exceeded.
- ``fixed``: the given threshold, a probability in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from vitalops.errors import InvalidInput
from vitalops.validation.inputs import outcomes_and_scores

RuleKind = Literal["sensitivity", "alert_budget", "fixed"]
_KINDS = ("sensitivity", "alert_budget", "fixed")
# Guards ceil(target * positives) against binary rounding (0.8 * 10 = 8.000000000000002).
_ROUNDING_SLACK = 1e-9


@dataclass(frozen=True)
class ThresholdRule:
    """How to choose the operating threshold; ``value`` means a target sensitivity (0-1),
    alerts per 100 patient-days, or the fixed threshold, by ``kind``."""

    kind: RuleKind
    value: float

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InvalidInput(f"unknown threshold rule kind {self.kind!r}", details={"allowed": list(_KINDS)})
        if not math.isfinite(self.value):
            raise InvalidInput("threshold rule value must be a finite number")
        if self.kind == "sensitivity" and not 0.0 < self.value <= 1.0:
            raise InvalidInput("a target sensitivity must be in (0, 1]")
        if self.kind == "alert_budget" and self.value < 0.0:
            raise InvalidInput("an alert budget cannot be negative")
        if self.kind == "fixed" and not 0.0 <= self.value <= 1.0:
            raise InvalidInput("a fixed threshold must be a probability in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": float(self.value)}


def choose_threshold(y_true: Any, y_score: Any, rule: ThresholdRule, *, patient_days: float | None = None) -> float:
    """The threshold ``rule`` picks on this data (flag when ``score >= threshold``).

    Raises InvalidInput for bad arrays, a sensitivity target on data without positives, or an
    alert budget without a positive ``patient_days``.
    """
    outcomes, scores = outcomes_and_scores(y_true, y_score)
    if rule.kind == "fixed":
        return float(rule.value)
    if rule.kind == "sensitivity":
        positive_scores = np.sort(scores[outcomes == 1])[::-1]
        if positive_scores.shape[0] == 0:
            raise InvalidInput("a sensitivity target needs at least one positive outcome")
        needed = math.ceil(rule.value * positive_scores.shape[0] - _ROUNDING_SLACK)
        needed = min(max(needed, 1), positive_scores.shape[0])
        return float(positive_scores[needed - 1])
    if patient_days is None or not math.isfinite(patient_days) or patient_days <= 0:
        raise InvalidInput("an alert budget needs the patient-days the rows cover (a positive number)")
    allowed_alerts = math.floor(rule.value * patient_days / 100.0 + _ROUNDING_SLACK)
    distinct_desc, counts = np.unique(-scores, return_counts=True)
    flagged_at = np.cumsum(counts)  # alerts when the threshold is each distinct score, highest first
    within = np.flatnonzero(flagged_at <= allowed_alerts)
    if within.shape[0] == 0:
        # Not even the highest score fits the budget: flag nobody.
        return float(np.nextafter(scores.max(), np.inf))
    return float(-distinct_desc[within[-1]])
