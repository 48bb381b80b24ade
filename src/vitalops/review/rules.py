"""Which predictions a clinician reviews: the rules, as data, and the policy that configures them.

A served prediction is queued when any rule holds:

``near_threshold``
    ``|score - threshold| <= margin`` (``VITALOPS_REVIEW_MARGIN``, default 0.05 in probability):
    a small change in any input would flip the decision, so the model's answer is no better than
    a coin at this point.
``high_risk_missing_inputs``
    the band is ``high`` and at least ``missing_top_min`` (default 2) of the top
    ``top_factors`` (default 3) factors of the explanation were not measured (their value is
    imputed): a high risk resting mostly on values the patient does not have is low-confidence.

``outside_training_range``
    an input lies outside the range the version was trained on (within the change-control plan's
    tolerance: beyond it the prediction is refused, ``vitalops.registry.input_ranges``): the model
    extrapolates there, and its answer has no evidence behind it.

The policy's ``mode`` says whether a queued prediction still yields a card (``beside``)
or is held from the EHR until reviewed (``instead``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vitalops.core.settings import Settings
from vitalops.serving import Prediction

#: Default half-width of the uncertainty band around the operating threshold (probability).
DEFAULT_MARGIN = 0.05


@dataclass(frozen=True)
class ReviewReason:
    rule: str
    text: str

    def describe(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "text": self.text}


@dataclass(frozen=True)
class ReviewPolicy:
    margin: float = DEFAULT_MARGIN
    top_factors: int = 3
    missing_top_min: int = 2
    mode: Literal["beside", "instead"] = "beside"

    @classmethod
    def from_settings(cls, settings: Settings) -> ReviewPolicy:
        """The installation's policy (``VITALOPS_REVIEW_MARGIN``, ``VITALOPS_REVIEW_MODE``)."""
        return cls(margin=settings.review_margin, mode=settings.review_mode)


def reasons_for(prediction: Prediction, policy: ReviewPolicy) -> list[ReviewReason]:
    """The rules ``prediction`` meets (none: it is not queued). Shadow predictions are never queued."""
    if not prediction.served:
        return []
    reasons = []
    distance = abs(prediction.score - prediction.threshold)
    if distance <= policy.margin:
        reasons.append(ReviewReason("near_threshold", f"risk {prediction.score:.0%} is within "
                                    f"{policy.margin:.0%} of the {prediction.threshold:.0%} threshold"))
    top = prediction.explanation.factors[: policy.top_factors]
    missing = sum(1 for factor in top if factor.value is None)
    if prediction.band == "high" and top and missing >= policy.missing_top_min:
        reasons.append(ReviewReason("high_risk_missing_inputs", f"high risk with {missing} of its top "
                                    f"{len(top)} factors not measured"))
    if prediction.out_of_range:
        names = ", ".join(prediction.out_of_range[:3]) + (" and more" if len(prediction.out_of_range) > 3 else "")
        reasons.append(ReviewReason("outside_training_range", f"inputs outside the training range: {names}"))
    return reasons
