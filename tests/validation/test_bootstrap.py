from __future__ import annotations

import numpy as np
import pytest

from tests.validation.cohort import scored_cohort
from vitalops.validation.bootstrap import bootstrap_intervals
from vitalops.validation.metrics import point_metrics


def test_intervals_cover_the_estimate_and_match_point_metrics() -> None:
    cohort = scored_cohort(3000)
    intervals = bootstrap_intervals(cohort["y"], cohort["score"], 0.3, n_resamples=300, seed=1)
    points = point_metrics(cohort["y"], cohort["score"], 0.3)
    for name, interval in intervals.items():
        assert interval.estimate == pytest.approx(points[name])
        assert interval.low is not None and interval.high is not None
        assert interval.low <= interval.estimate <= interval.high, name


def test_intervals_narrow_with_more_patients() -> None:
    small = bootstrap_intervals(**_args(1000), n_resamples=300, seed=2)
    large = bootstrap_intervals(**_args(16000), n_resamples=300, seed=2)
    for name in ("auroc", "sensitivity", "brier", "calibration_slope"):
        small_width = small[name].high - small[name].low  # type: ignore[operator]
        large_width = large[name].high - large[name].low  # type: ignore[operator]
        assert large_width < small_width / 2, name


def _args(n: int) -> dict[str, object]:
    cohort = scored_cohort(n, seed=11)
    return {"y_true": cohort["y"], "y_score": cohort["score"], "threshold": 0.3}


def test_same_seed_same_intervals_other_seed_differs() -> None:
    cohort = scored_cohort(1500)
    first = bootstrap_intervals(cohort["y"], cohort["score"], 0.3, n_resamples=200, seed=5)
    again = bootstrap_intervals(cohort["y"], cohort["score"], 0.3, n_resamples=200, seed=5)
    other = bootstrap_intervals(cohort["y"], cohort["score"], 0.3, n_resamples=200, seed=6)
    assert first == again
    assert first["auroc"] != other["auroc"]


def test_one_class_resamples_are_left_out() -> None:
    y = np.array([1] + [0] * 29)
    score = np.linspace(0.05, 0.9, 30)
    intervals = bootstrap_intervals(y, score, 0.5, n_resamples=200, seed=0)
    # About (29/30)^30 = 36% of resamples miss the single positive; AUROC still has an interval.
    assert intervals["auroc"].low is not None
    assert intervals["specificity"].low is not None
