from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import MetricFrame, selection_rate, true_negative_rate, true_positive_rate
from sklearn.metrics import precision_score, roc_auc_score

from tests.validation.cohort import scored_cohort
from vitalops.errors import InvalidInput
from vitalops.validation.fairness import age_band, subgroup_metrics


def test_group_metrics_and_ratios_agree_with_fairlearn() -> None:
    cohort = scored_cohort(4000)
    y, score = cohort["y"], cohort["score"]
    predicted = (score >= 0.3).astype(int)
    # A low suppression threshold: this test is about agreement, not small cells (see test_suppression).
    results = subgroup_metrics(
        y, score, 0.3, {"race": cohort["race"]}, reference={"race": "white"}, small_group_min=5, n_resamples=100, seed=3
    )
    frame = MetricFrame(
        metrics={
            "sensitivity": true_positive_rate,
            "specificity": true_negative_rate,
            "flag_rate": selection_rate,
            "ppv": precision_score,
        },
        y_true=y,
        y_pred=predicted,
        sensitive_features=cohort["race"],
    )
    shown = {result.group: result for result in results if not result.suppressed}
    assert set(shown) == {"white", "black", "asian", "other"}
    for group, result in shown.items():
        assert result.metrics is not None and result.ratios is not None
        for metric in ("sensitivity", "specificity", "flag_rate", "ppv"):
            assert result.metrics[metric].estimate == pytest.approx(frame.by_group.loc[group, metric])
            expected_ratio = frame.by_group.loc[group, metric] / frame.by_group.loc["white", metric]
            assert result.ratios[metric].estimate == pytest.approx(expected_ratio)
        members = cohort["race"] == group
        assert result.metrics["auroc"].estimate == pytest.approx(roc_auc_score(y[members], score[members]))
        assert result.n == members.sum() and result.positives == y[members].sum()
    assert shown["white"].is_reference and shown["white"].ratios["sensitivity"].estimate == 1.0


def test_small_groups_are_suppressed_and_never_show_metrics() -> None:
    cohort = scored_cohort(2000)
    race = cohort["race"].astype(object)
    race[:7] = "pacific islander"
    race[7:] = np.where(race[7:] == "pacific islander", "other", race[7:])
    results = subgroup_metrics(cohort["y"], cohort["score"], 0.3, {"race": race}, small_group_min=20, n_resamples=50)
    [hidden] = [result for result in results if result.group == "pacific islander"]
    assert hidden.suppressed and hidden.count_display == "<20"
    assert hidden.n is None and hidden.positives is None and hidden.metrics is None and hidden.ratios is None
    assert "7" not in hidden.model_dump_json().replace("pacific", "")


def test_default_reference_is_the_largest_group() -> None:
    cohort = scored_cohort(2000)
    results = subgroup_metrics(cohort["y"], cohort["score"], 0.3, {"race": cohort["race"]}, n_resamples=50)
    [reference] = [result for result in results if result.is_reference]
    assert reference.group == "white"


def test_age_bands() -> None:
    bands = age_band([17.9, 18, 39.99, 40, 64.5, 65, 79.9, 80, 104, float("nan")])
    assert bands.tolist() == ["unknown", "18-39", "18-39", "40-64", "40-64", "65-79", "65-79", "80+", "80+", "unknown"]


def test_group_array_of_wrong_length_is_refused() -> None:
    cohort = scored_cohort(100)
    with pytest.raises(InvalidInput):
        subgroup_metrics(cohort["y"], cohort["score"], 0.3, {"sex": cohort["sex"][:50]}, n_resamples=10)
