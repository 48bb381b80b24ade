from __future__ import annotations

import orjson
import pytest

from tests.validation.cohort import scored_cohort
from vitalops.errors import InvalidInput
from vitalops.validation.card import SECTION_TITLES, build_model_card
from vitalops.validation.report import build_report
from vitalops.validation.thresholds import ThresholdRule

MODEL = {
    "name": "deterioration",
    "description": "Predicts clinical deterioration within 24 hours of an inpatient observation.",
    "intended_use": "Early warning for ward nurses",
    "clinical_owner": "Dr Rapid Response",
    "risk_class": "moderate",
    "target_population": "Adult inpatients outside the ICU",
}
VERSION = {"version": 3, "state": "approved", "estimator": "lightgbm", "artifact_sha256": "ab" * 32}


def _card():  # type: ignore[no-untyped-def]
    cohort = scored_cohort(1500)
    report = build_report(
        cohort["y"],
        cohort["score"],
        threshold_rule=ThresholdRule("sensitivity", 0.8),
        groups={"sex": cohort["sex"]},
        n_resamples=50,
    )
    approvals = [{"approver": "grace", "decision": "approve", "reason": "meets plan", "created_at": "2026-01-02"}]
    pccp = {"version": 1, "content_hash": "cd" * 32, "allowed_modifications": ["retrain", "recalibrate"]}
    return build_model_card(model=MODEL, version=VERSION, report=report, approvals=approvals, pccp=pccp), report


def test_card_has_every_chai_section_in_all_formats() -> None:
    card, report = _card()
    as_json = orjson.loads(orjson.dumps(card.to_json()))
    markdown = card.to_markdown()
    html = card.to_html()
    for key, title in SECTION_TITLES.items():
        assert key in as_json
        assert f"## {title}" in markdown
        assert f"<h2>{title}</h2>" in html
    auroc = f"{report.overall.metrics['auroc'].estimate:.3f}"
    for text in (orjson.dumps(as_json).decode(), markdown, html):
        assert auroc in text and "grace" in text and report.content_hash() in text
    assert as_json["key_metrics"]["fairness_equity"]["results"]
    assert as_json["uses_and_directions"]["targeted_patient_population"] == MODEL["target_population"]
    assert as_json["basic_information"]["developer_contact"] == "Not provided"


def test_card_needs_name_and_version() -> None:
    _, report = _card()
    with pytest.raises(InvalidInput):
        build_model_card(model={}, version=VERSION, report=report, approvals=[], pccp=None)


def test_card_states_what_was_resampled_and_the_suppression_rule() -> None:
    card, report = _card()
    markdown = card.to_markdown()
    assert report.resampling is not None and report.resampling.description in markdown
    assert "next-smallest cell" in card.trust_ingredients["ai_system_facts"]["bias_mitigation_approaches"]
