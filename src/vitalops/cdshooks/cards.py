"""The CDS Hooks card of one served prediction (CDS Hooks 2.0.1, "Card Attributes").

One card per served prediction: the risk in the summary (under 140 characters), the indicator by
band, the top factors with their values and units and the counterfactuals in Markdown, the source
naming the model version with a link to its model card, override reasons as Codings with displays,
and one suggestion that creates the FHIR RiskAssessment (``selectionBehavior`` ``at-most-one``).

Everything on the card is about the patient of ``context.patientId``: the values are this
prediction's own inputs, the RiskAssessment's subject is that patient's reference, and the links
point at the model card only.
"""

from __future__ import annotations

import uuid
from typing import Any

from vitalops.fhir.risk_assessment import build_risk_assessment
from vitalops.serving import Prediction

#: CDS Hooks indicator by risk band.
INDICATORS = {"low": "info", "moderate": "warning", "high": "critical"}
SUMMARY_MAX = 139  # the specification: "<140 characters"
OVERRIDE_SYSTEM = "urn:vitalops:cds:override-reason"
OVERRIDE_REASONS = (
    ("clinically-assessed", "Assessed at the bedside: the risk is not supported clinically"),
    ("data-incorrect", "The data behind the score is wrong or out of date"),
    ("already-addressed", "Already being managed (escalated or reviewed)"),
    ("not-applicable", "Not applicable to this patient (for example comfort care)"),
)
TOP_FACTORS = 5
_SUGGESTION_NAMESPACE = uuid.UUID("6f2b5a2e-9f8e-4a34-9a0c-2c1b7a6f0d11")


def card_uuid(prediction_id: str) -> str:
    """The card's uuid: the prediction id's own uuid, so feedback on the card finds its prediction."""
    return str(uuid.UUID(hex=prediction_id.removeprefix("pred_")))


def prediction_id_of(card: str) -> str | None:
    """The prediction id a card uuid stands for, or None when it is not a uuid."""
    try:
        return f"pred_{uuid.UUID(card).hex}"
    except (ValueError, AttributeError, TypeError):
        return None


def suggestion_uuid(card: str) -> str:
    return str(uuid.uuid5(_SUGGESTION_NAMESPACE, card))


def _label(feature: str) -> str:
    return feature.replace("_", " ")


def _value(value: float | None, unit: str | None) -> str:
    if value is None:
        return "not measured"
    return f"{value:.4g} {unit}".strip() if unit else f"{value:.4g}"


def summary(prediction: Prediction) -> str:
    """One sentence with the risk, cut to fit under 140 characters."""
    text = f"{prediction.band.capitalize()} risk ({prediction.score:.0%}): {prediction.outcome}"
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def detail(prediction: Prediction, review_note: str | None = None) -> str:
    """The Markdown detail: risk and threshold, the top factors with values and units, the counterfactuals."""
    lines = [
        f"**{prediction.score:.0%}** risk of {prediction.outcome} "
        f"({prediction.band}; flagged from {prediction.threshold:.0%}).",
        "",
    ]
    factors = prediction.explanation.factors[:TOP_FACTORS]
    if factors:
        lines += ["**What drives it** (contribution to the log-odds)", "", "| factor | value | effect |",
                  "|---|---|---|"]
        lines += [f"| {_label(f.feature)} | {_value(f.value, f.unit)} | {f.contribution:+.2f} |" for f in factors]
        lines.append("")
    if prediction.explanation.counterfactuals:
        lines += ["**If it were normal**", ""]
        lines += [
            f"- {_label(c.feature)} at {_value(c.normal_value, c.unit)} (now {_value(c.value, c.unit)}): "
            f"risk {c.risk_if_normal:.0%}"
            for c in prediction.explanation.counterfactuals
        ]
        lines.append("")
    if review_note:
        lines += [f"_{review_note}_", ""]
    lines.append(f"Model {prediction.model} v{prediction.version}; explanation {prediction.explanation.method}.")
    return "\n".join(lines)


def build_card(prediction: Prediction, *, patient_id: str, model_card_url: str,
               review_note: str | None = None) -> dict[str, Any]:
    """The card of a served prediction for the patient ``patient_id`` (ValueError for a shadow)."""
    if not prediction.served or prediction.mode == "shadow":
        raise ValueError("a shadow prediction never yields a card")
    uid = card_uuid(prediction.id)
    risk_assessment = build_risk_assessment(
        prediction_id=prediction.id, model=prediction.model, version=prediction.version,
        outcome=prediction.outcome, probability=prediction.score, band=prediction.band,
        occurrence=prediction.at, patient_reference=f"Patient/{patient_id}", card_url=model_card_url,
    )
    return {
        "uuid": uid,
        "summary": summary(prediction),
        "detail": detail(prediction, review_note),
        "indicator": INDICATORS[prediction.band],
        "source": {"label": f"VitalOps {prediction.model} v{prediction.version}", "url": model_card_url},
        "suggestions": [{
            "label": "Record this risk assessment in the chart",
            "uuid": suggestion_uuid(uid),
            "isRecommended": prediction.band == "high",
            "actions": [{"type": "create", "description": f"Create a RiskAssessment: {prediction.score:.0%} "
                         f"risk of {prediction.outcome}", "resource": risk_assessment}],
        }],
        "selectionBehavior": "at-most-one",
        "overrideReasons": [{"system": OVERRIDE_SYSTEM, "code": code, "display": display}
                            for code, display in OVERRIDE_REASONS],
        "links": [{"label": f"Model card: {prediction.model} v{prediction.version}", "url": model_card_url,
                   "type": "absolute"}],
    }
