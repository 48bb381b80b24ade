"""The metric registry: stable ids, refused when unknown or malformed."""

from __future__ import annotations

import pytest

from vitalops.errors import InvalidInput
from vitalops.monitoring.metrics import METRICS, get_metric, list_metrics


def test_known_ids_resolve_to_their_family():
    assert get_metric("input_drift.psi/creatinine_last").family == "input_drift.psi"
    assert get_metric("ops.latency_ms.p99").per is None
    assert get_metric("quality.out_of_range_rate/creatinine").per == "concept"
    assert [m.family for m in list_metrics()] == sorted(METRICS)
    for family in ("input_drift.missing_rate", "prediction_drift.score_psi", "prediction_drift.flag_rate",
                   "ops.volume", "workflow.override_rate", "quality.unit_mix", "quality.freshness_hours",
                   "calibration.intercept", "calibration.slope", "performance.auroc", "performance.brier",
                   "performance.sensitivity", "performance.ppv"):
        assert family in METRICS


@pytest.mark.parametrize("metric_id, words", [
    ("drift.psi", "unknown metric"),
    ("input_drift.psi", "measured per feature"),
    ("ops.volume/north", "takes no argument"),
    ("input_drift.psi/bad name;", "needs a feature name"),
    ("input_drift.psi/", "needs a feature name"),
])
def test_an_unknown_or_malformed_id_is_refused_with_a_clear_error(metric_id, words):
    with pytest.raises(InvalidInput, match=words) as raised:
        get_metric(metric_id)
    assert raised.value.details == {"field": "metric"}
