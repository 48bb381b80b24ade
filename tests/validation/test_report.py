from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from tests.validation.cohort import scored_cohort
from vitalops.errors import InvalidInput
from vitalops.validation.bootstrap import bootstrap_intervals
from vitalops.validation.fairness import age_band
from vitalops.validation.report import ValidationReport, build_report, meets_minimums, render_report_html
from vitalops.validation.thresholds import ThresholdRule


def _report(**overrides: object) -> ValidationReport:
    cohort = scored_cohort(3000)
    held_out = scored_cohort(800, seed=21)
    arguments: dict[str, object] = {
        "threshold_rule": ThresholdRule("sensitivity", 0.8),
        "groups": {"sex": cohort["sex"], "age_band": age_band(cohort["age"]), "race": cohort["race"]},
        "sites": cohort["site"],
        "external": {"west": (held_out["y"], held_out["score"]), "tiny": (held_out["y"][:5], held_out["score"][:5])},
        "n_resamples": 200,
        "seed": 4,
        "small_group_min": 100,
    }
    arguments.update(overrides)
    return build_report(cohort["y"], cohort["score"], **arguments)  # type: ignore[arg-type]


def test_report_holds_every_part_and_is_json_safe() -> None:
    report = _report()
    assert report.overall.metrics["sensitivity"].estimate >= 0.8
    assert {result.attribute for result in report.subgroups} == {"sex", "age_band", "race", "site"}
    assert [site.site for site in report.external] == ["tiny", "west"]
    assert report.external[0].suppressed and report.external[0].metrics is None
    assert report.external[1].metrics["auroc"].low is not None
    assert len(report.decision_curve) == 50 and len(report.calibration) == 10
    assert any("race=other" in warning for warning in report.warnings)
    text = report.model_dump_json()
    assert "NaN" not in text and "Infinity" not in text
    restored = ValidationReport.model_validate(orjson.loads(text))
    assert restored.content_hash() == report.content_hash()


def test_overall_intervals_match_bootstrap_intervals_with_the_same_seed() -> None:
    cohort = scored_cohort(3000)
    report = _report()
    alone = bootstrap_intervals(cohort["y"], cohort["score"], report.threshold, n_resamples=200, seed=4)
    assert report.overall.metrics == alone


def test_given_threshold_wins_and_changes_the_hash() -> None:
    first = _report(threshold=0.35)
    assert first.threshold == 0.35 and first.threshold_source == "given"
    assert first.content_hash() != _report(threshold=0.36).content_hash()


def test_minimums() -> None:
    report = _report()
    auroc_low = report.overall.metrics["auroc"].low
    assert meets_minimums(report, {"auroc_low": auroc_low - 0.01, "sensitivity": 0.8}) == []
    assert meets_minimums(report, {"auroc_low": auroc_low + 0.01, "ece_high_max": 0.0}) == ["auroc_low", "ece_high_max"]
    with pytest.raises(InvalidInput):
        meets_minimums(report, {"accuracy_low": 0.5})


def test_html_is_self_contained_and_shows_the_key_numbers() -> None:
    report = _report()
    html = render_report_html(report, title="Deterioration <v1>")
    assert "Deterioration &lt;v1&gt;" in html
    assert f"{report.overall.metrics['auroc'].estimate:.3f}" in html
    assert f"{report.overall.metrics['auroc'].low:.3f}" in html
    assert f"{report.threshold:.4f}" in html
    assert (
        html.count("<svg") == 2
        and "<script" not in html
        and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    assert report.content_hash() in html
    assert "suppressed" in html


def test_one_class_resamples_are_counted_in_warnings() -> None:
    cohort = scored_cohort(40, seed=3)
    y = cohort["y"] * 0
    y[0] = 1
    report = build_report(
        y, cohort["score"], threshold_rule=ThresholdRule("fixed", 0.3), groups={}, n_resamples=100, seed=0
    )
    assert report.overall.one_class_resamples > 0
    assert any("one outcome class" in warning for warning in report.warnings)
    assert not math.isnan(report.overall.metrics["auroc"].low)


def test_report_states_what_was_resampled_and_the_suppression_rule_in_words() -> None:
    cohort = scored_cohort(3000)
    keys = np.asarray([f"patient-{index // 6}" for index in range(3000)])
    report = _report(patient_keys=keys)
    assert report.resampling is not None and report.resampling.unit == "patients"
    assert report.resampling.description.startswith("500 patients resampled with replacement")
    assert "3,000 rows" in report.resampling.description and "200 resamples" in report.resampling.description
    assert report.overall.patients == 500 and report.overall.n == 3000
    html = render_report_html(report, title="t")
    assert "500 patients resampled" in html and "next-smallest cell" in html
    card_free = _report()
    assert card_free.resampling is not None and "no patient key was given" in card_free.resampling.description
    # Resampling patients widens the interval on these clustered keys only through the draws, and the
    # same seed and keys give the same report numbers.
    assert report.overall.metrics == _report(patient_keys=keys).overall.metrics
    assert len(cohort["y"]) == report.overall.n
