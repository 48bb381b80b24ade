"""FHIR R4 RiskAssessment for one prediction: status, subject, occurrence, the probability and its
qualitative band, the basis, and the method naming the model version, with a link to its card.

The subject is the EHR's own Patient reference when the request came with one (a CDS Hooks call);
otherwise the platform's pseudonymous patient key as an identifier, never an MRN.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vitalops.core.clock import isoformat_utc

RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
MODEL_SYSTEM = "urn:vitalops:model-version"
PATIENT_KEY_SYSTEM = "urn:vitalops:patient-key"
MODEL_CARD_EXTENSION = "urn:vitalops:fhir:extension:model-card"
PREDICTION_SYSTEM = "urn:vitalops:prediction"


def build_risk_assessment(
    *,
    prediction_id: str,
    model: str,
    version: int,
    outcome: str,
    probability: float,
    band: str,
    occurrence: datetime,
    patient_reference: str | None = None,
    patient_key: str | None = None,
    basis: list[str] | None = None,
    card_url: str | None = None,
) -> dict[str, Any]:
    """The RiskAssessment resource (a JSON-ready dict) of one prediction."""
    if patient_reference is not None:
        subject: dict[str, Any] = {"reference": patient_reference}
    elif patient_key is not None:
        subject = {"identifier": {"system": PATIENT_KEY_SYSTEM, "value": patient_key}}
    else:
        subject = {"display": "patient not identified (scored from a feature vector)"}
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "identifier": [{"system": PREDICTION_SYSTEM, "value": prediction_id}],
        "status": "final",
        "subject": subject,
        "occurrenceDateTime": isoformat_utc(occurrence),
        "method": {
            "coding": [{"system": MODEL_SYSTEM, "code": f"{model}/{version}", "display": f"{model} v{version}"}],
            "text": f"VitalOps model {model} version {version}",
        },
        "prediction": [
            {
                "outcome": {"text": outcome},
                "probabilityDecimal": round(float(probability), 6),
                "qualitativeRisk": {"coding": [{"system": RISK_PROBABILITY, "code": band}]},
            }
        ],
    }
    if basis:
        resource["basis"] = [{"reference": reference} for reference in basis]
    if card_url:
        resource["extension"] = [{"url": MODEL_CARD_EXTENSION, "valueUrl": card_url}]
    return resource
