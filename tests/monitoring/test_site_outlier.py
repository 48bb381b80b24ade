"""Per-site variance: with four sites scoring the same model and one of them sending creatinine in
umol/L under mg/dL, ``sites.outlier/input_drift.psi/creatinine_last`` flags that site and no other,
with the value the leave-one-out rule gives on the stored per-site values; two sites are too few."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from tests.governance.plans import ALICE, register_sites
from tests.monitoring.conftest import DAY0, MODEL, OPERATOR
from vitalops.artifacts import open_store
from vitalops.errors import InvalidInput
from vitalops.monitoring.engine import run_monitoring
from vitalops.monitoring.metrics import get_metric
from vitalops.monitoring.results import MetricResult, read_results
from vitalops.monitoring.site_variance import OUTLIER_Z, robust_z, site_outliers
from vitalops.registry.deployments import apply_deployment, parse_mode

PLANTED = "west"
DRIFT = "input_drift.psi/creatinine_last"


def test_the_planted_site_is_the_outlier_and_the_value_is_the_rules(monitored, tmp_path):
    register_sites(monitored.database, "east", PLANTED)
    with monitored.database.session() as session:
        for site in ("east", PLANTED):
            apply_deployment(session, actor=ALICE, name=MODEL, number=1, site=site, mode=parse_mode("champion"),
                             reason="test")
    for site in ("north", "south", "east"):
        monitored.score_day(tmp_path, site, 0, 200)
    monitored.score_day(tmp_path, PLANTED, 0, 200, scale={"creatinine_last": 88.42})
    run_monitoring(monitored.database, OPERATOR, lake_root=monitored.lake_root,
                   store=open_store(monitored.settings.artifacts_root), model=MODEL,
                   now=DAY0 + timedelta(days=1, hours=1))
    with monitored.database.session() as session:
        psi = {r.site: r.value for r in read_results(session, model=MODEL, metric_id=DRIFT)}
        outlier = {r.site: r for r in read_results(session, model=MODEL, metric_id=f"sites.outlier/{DRIFT}")}
        every = read_results(session, model=MODEL, metric_id="sites.outlier")
    assert set(outlier) == {"north", "south", "east", PLANTED}
    assert outlier[PLANTED].status == "flagged" and outlier[PLANTED].value > OUTLIER_Z
    assert all(outlier[site].status == "ok" for site in ("north", "south", "east"))
    for site, result in outlier.items():
        others = sorted(value for other, value in psi.items() if other != site)
        center = others[1]  # the median of three
        spread = max(1.4826 * sorted(abs(v - center) for v in others)[1], 0.1 * abs(center))
        assert result.value == pytest.approx((psi[site] - center) / spread, rel=1e-9)
        assert result.n == 4 and result.details["others_median"] == pytest.approx(center)
    # every judged id is a registered metric's, volume is not judged, and nothing judges an outlier row
    assert every and all(get_metric(r.metric_id) for r in every)
    assert not any(r.metric_id in ("sites.outlier/ops.volume",) or r.metric_id.count("sites.outlier") > 1
                   for r in every)
    flagged = {r.site for r in every if r.status == "flagged" and r.metric_id.endswith("/creatinine_last")}
    assert flagged == {PLANTED}


def _result(metric_id: str, site: str, value: float | None, n: int = 100) -> MetricResult:
    start = datetime(2026, 3, 2, tzinfo=UTC)
    return MetricResult(metric_id=metric_id, model=MODEL, version=1, site=site, window_start=start,
                        window_end=start + timedelta(days=1), value=value, n=n,
                        status="ok" if value is not None else "insufficient_data")


def _judged(results: list[MetricResult]) -> dict[str, tuple]:
    written: dict[str, tuple] = {}

    def add(metric_id, version, site, value, n, status, details):
        if n < get_metric(metric_id).min_n:
            value, status = None, "insufficient_data"
        written[site] = (value, n, status, details)

    site_outliers(add, results)
    return written


def test_two_sites_are_too_few_and_a_site_without_a_value_is_left_out():
    two = _judged([_result("prediction_drift.score_psi", "a", 0.1), _result("prediction_drift.score_psi", "b", 3.0)])
    assert {site: row[:3] for site, row in two.items()} == {"a": (None, 2, "insufficient_data"),
                                                              "b": (None, 2, "insufficient_data")}
    one_missing = _judged([_result("prediction_drift.score_psi", s, v) for s, v in
                           (("a", 0.1), ("b", 3.0), ("c", None))])
    assert set(one_missing) == {"a", "b"} and all(row[1] == 2 for row in one_missing.values())
    assert _judged([_result("ops.volume", s, 100.0 * i) for i, s in enumerate("abcd")]) == {}


def test_a_rate_is_not_called_out_for_what_its_own_sample_explains():
    # others at exactly 0: one out-of-range value in 25 facts is within binomial noise, 20 in 25 is not
    z, figures = robust_z(1 / 25, [0.0, 0.0, 0.0], fraction=True, n=25)
    share = 0.5 / 25
    assert figures["spread"] == pytest.approx(math.sqrt(share * (1 - share) / 25))
    assert z is not None and abs(z) < OUTLIER_Z
    z, _ = robust_z(20 / 25, [0.0, 0.0, 0.0], fraction=True, n=25)
    assert z is not None and z > OUTLIER_Z
    # a statistic (not a fraction) against others that agree exactly has no spread to judge by
    assert robust_z(0.3, [0.0, 0.0], fraction=False, n=100)[0] is None
    # the leave-one-out median and MAD: one more odd site among the others moves neither much
    z, figures = robust_z(0.5, [0.10, 0.12, 0.11, 0.9], fraction=False, n=100)
    assert figures["others_median"] == pytest.approx(0.115) and z > OUTLIER_Z


def test_the_id_names_another_families_metric():
    assert get_metric(f"sites.outlier/{DRIFT}").per == "metric"
    for bad in ("sites.outlier/sites.outlier/ops.volume", "sites.outlier/drift.bogus", "sites.outlier"):
        with pytest.raises(InvalidInput):
            get_metric(bad)
