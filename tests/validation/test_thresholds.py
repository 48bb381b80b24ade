from __future__ import annotations

import numpy as np
import pytest

from tests.validation.cohort import scored_cohort
from vitalops.errors import InvalidInput
from vitalops.validation.metrics import point_metrics
from vitalops.validation.thresholds import ThresholdRule, choose_threshold


@pytest.mark.parametrize("rounded", [False, True])
@pytest.mark.parametrize("target", [0.5, 0.8, 0.95])
def test_sensitivity_target_is_met_with_the_highest_threshold(rounded: bool, target: float) -> None:
    cohort = scored_cohort(3000, rounded=rounded)
    threshold = choose_threshold(cohort["y"], cohort["score"], ThresholdRule("sensitivity", target))
    assert point_metrics(cohort["y"], cohort["score"], threshold)["sensitivity"] >= target
    higher = np.min(cohort["score"][cohort["score"] > threshold])
    assert point_metrics(cohort["y"], cohort["score"], higher)["sensitivity"] < target


@pytest.mark.parametrize("rounded", [False, True])
def test_alert_budget_is_respected(rounded: bool) -> None:
    cohort = scored_cohort(3000, rounded=rounded)
    patient_days = 6000.0
    rule = ThresholdRule("alert_budget", 5.0)  # 5 alerts per 100 patient-days -> at most 300 alerts
    threshold = choose_threshold(cohort["y"], cohort["score"], rule, patient_days=patient_days)
    alerts = int(np.count_nonzero(cohort["score"] >= threshold))
    assert alerts <= 300
    next_lower = np.max(cohort["score"][cohort["score"] < threshold])
    assert np.count_nonzero(cohort["score"] >= next_lower) > 300


def test_zero_budget_flags_nobody_and_fixed_is_returned() -> None:
    cohort = scored_cohort(500)
    threshold = choose_threshold(cohort["y"], cohort["score"], ThresholdRule("alert_budget", 0.0), patient_days=10)
    assert np.count_nonzero(cohort["score"] >= threshold) == 0
    assert choose_threshold(cohort["y"], cohort["score"], ThresholdRule("fixed", 0.42)) == 0.42


def test_bad_rules_are_refused() -> None:
    with pytest.raises(InvalidInput):
        ThresholdRule("sensitivity", 1.5)
    with pytest.raises(InvalidInput):
        ThresholdRule("percentile", 0.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        choose_threshold([0, 1], [0.2, 0.7], ThresholdRule("alert_budget", 2.0))
    with pytest.raises(InvalidInput):
        choose_threshold([0, 0], [0.2, 0.7], ThresholdRule("sensitivity", 0.8))
