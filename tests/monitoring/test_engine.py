"""The engine over the prediction log and its archive: every metric per complete window, stored once
however often it runs, resumed after a crash, performance only once labels have matured."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from sqlalchemy import func, select

from tests.monitoring.conftest import CLINICIAN, DAY0, MODEL, OPERATOR
from vitalops.artifacts import open_store
from vitalops.audit import list_events
from vitalops.db.tables.monitoring import MonitoringReferenceRow, MonitoringResultRow
from vitalops.errors import InvalidInput, PermissionDenied
from vitalops.monitoring import engine as engine_module
from vitalops.monitoring.engine import parse_window, run_monitoring
from vitalops.monitoring.metrics import get_metric
from vitalops.monitoring.results import latest_results, read_results
from vitalops.serving import record_outcome


def _run(monitored, **options):
    options.setdefault("now", DAY0 + timedelta(days=2, hours=1))
    return run_monitoring(monitored.database, OPERATOR, lake_root=monitored.lake_root,
                          store=open_store(monitored.settings.artifacts_root), model=MODEL, **options)


def _stored(monitored) -> dict[tuple, tuple]:
    with monitored.database.session() as session:
        return {(r.metric_id, r.version, r.site, r.window_start): (r.value, r.n, r.status, r.details_json)
                for r in session.scalars(select(MonitoringResultRow))}


@pytest.fixture
def two_days(monitored, tmp_path):
    """Two days at two sites; on day 2 south sends creatinine in umol/L under mg/dL."""
    for site in ("north", "south"):
        monitored.score_day(tmp_path, site, 0, 300)
    monitored.score_day(tmp_path, "north", 1, 300)
    monitored.score_day(tmp_path, "south", 1, 300, scale={"creatinine_last": 88.42})
    return monitored


def test_a_unit_mislabel_at_one_site_is_flagged_there_only_and_every_id_is_registered(two_days):
    summary = _run(two_days)
    assert summary["windows"] == 2 and summary["results"] > 0
    with two_days.database.session() as session:
        day2 = DAY0 + timedelta(days=1)
        psi = {r.site: r for r in read_results(session, model=MODEL, metric_id="input_drift.psi/creatinine_last",
                                                since=day2)}
        everything = read_results(session, model=MODEL)
        reference = session.scalar(select(MonitoringReferenceRow))
    assert psi["south"].status == "flagged" and psi["south"].value > 1
    assert psi["north"].status == "ok" and psi["north"].n == 300
    assert psi["south"].details["ks_pvalue"] < 1e-20 and psi["south"].window_end == day2 + timedelta(days=1)
    assert reference is not None and reference.rows == 3000
    for result in everything:
        get_metric(result.metric_id)  # every stored id is registered
        assert result.status in ("ok", "insufficient_data", "flagged")
        assert result.status != "insufficient_data" or result.value is None
    flagged = {(f["metric_id"], f["site"]) for f in summary["flagged"]}
    assert ("input_drift.psi/creatinine_last", "south") in flagged
    assert not any(site == "north" and metric.startswith("input_drift.psi") for metric, site in flagged)
    ids = {r.metric_id for r in everything}
    assert {"ops.volume", "prediction_drift.score_psi", "prediction_drift.flag_rate", "input_drift.wasserstein/age",
            "input_drift.missing_rate/lactate_last", "input_drift.evidently/creatinine_last",
            "quality.freshness_hours", "estimated_performance.auroc", "estimated_performance.ppv"} <= ids
    estimated = [r for r in everything if r.metric_id == "estimated_performance.auroc" and r.site == "north"]
    assert len(estimated) == 2
    assert all(0.5 < r.value < 1 and "no concept shift" in r.details["assumption"] for r in estimated)
    # patient keys never reach a result
    text = orjson.dumps([r.model_dump(mode="json") for r in everything]).decode()
    assert "north000" not in text and "south001" not in text


def test_running_twice_changes_nothing_and_each_window_is_audited(two_days):
    _run(two_days)
    first = _stored(two_days)
    again = _run(two_days)
    assert _stored(two_days) == first
    with two_days.database.session() as session:
        events = list_events(session, action="monitoring.window_computed")
    assert len(events) == 4
    rerun = [e.payload for e in events if e.payload["run_id"] == again["run_id"]]
    assert [payload["inserted"] for payload in rerun] == [0, 0]
    assert sum(payload["replaced"] for payload in rerun) == again["results"]


def test_a_crash_midway_resumes_to_the_clean_result(two_days, monkeypatch):
    real = engine_module.upsert
    calls = {"n": 0}

    def dies_on_the_second_window(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed during the second window")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "upsert", dies_on_the_second_window)
    with pytest.raises(RuntimeError):
        _run(two_days)
    monkeypatch.setattr(engine_module, "upsert", real)
    with two_days.database.session() as session:
        windows = set(session.scalars(select(MonitoringResultRow.window_start).distinct()))
    assert windows == {DAY0}  # the first window committed, the second rolled back
    _run(two_days)
    resumed = _stored(two_days)
    with two_days.database.session() as session:
        session.execute(MonitoringResultRow.__table__.delete())
    _run(two_days)
    assert _stored(two_days).keys() == resumed.keys()
    assert {k: v[:3] for k, v in _stored(two_days).items()} == {k: v[:3] for k, v in resumed.items()}


def test_performance_waits_for_the_label_horizon_then_uses_the_outcomes(monitored):
    made = monitored.predict_online("north", DAY0 + timedelta(hours=8), 120)
    for index, (prediction_id, score) in enumerate(made):
        record_outcome(monitored.database, CLINICIAN, prediction_id, outcome=int(score > 0.15 or index % 9 == 0),
                       observed_at=DAY0 + timedelta(days=1), source="ehr")
    _run(monitored, now=DAY0 + timedelta(days=1, hours=1))  # the window closed, its 48 h horizon has not passed
    with monitored.database.session() as session:
        assert read_results(session, model=MODEL, metric_id="performance.auroc") == []
        latency = read_results(session, model=MODEL, metric_id="ops.latency_ms.p95")
    assert latency[0].value is not None and latency[0].n == 120
    _run(monitored, now=DAY0 + timedelta(days=3, hours=1))
    with monitored.database.session() as session:
        auroc = read_results(session, model=MODEL, metric_id="performance.auroc")
        slope = read_results(session, model=MODEL, metric_id="calibration.slope")
    assert len(auroc) == 1 and auroc[0].n == 120 and auroc[0].value > 0.8
    assert auroc[0].details["low"] <= auroc[0].value <= auroc[0].details["high"]
    assert "61 patients" in auroc[0].details["resampled"]
    assert slope[0].value is not None


def test_reading_needs_a_known_metric_and_running_needs_the_operator_role(two_days):
    with pytest.raises(PermissionDenied):
        run_monitoring(two_days.database, CLINICIAN, lake_root=two_days.lake_root,
                       store=open_store(two_days.settings.artifacts_root), model=MODEL)
    _run(two_days)
    with two_days.database.session() as session:
        with pytest.raises(InvalidInput, match="unknown metric"):
            read_results(session, model=MODEL, metric_id="input_drift.bogus/age")
        family = read_results(session, model=MODEL, metric_id="input_drift.psi", site="north")
        latest = latest_results(session, model=MODEL, metric_id="ops.volume")
    assert {r.metric_id for r in family} == {f"input_drift.psi/{n}" for n in two_days.feature_names}
    assert {(r.site, r.window_start) for r in latest} == {("north", DAY0 + timedelta(days=1)),
                                                           ("south", DAY0 + timedelta(days=1))}
    assert parse_window("6h") == timedelta(hours=6)
    with pytest.raises(InvalidInput):
        parse_window("5h")
    with two_days.database.session() as session:
        assert session.scalar(select(func.count()).select_from(MonitoringReferenceRow)) == 1


def test_measured_auroc_far_below_the_estimate_is_flagged_where_outcomes_stopped_following_the_scores(monitored):
    # Known truth: at north the outcome follows the score (the reference's relation, or better); at
    # south, over the same kind of inputs, it is unrelated to the score (a concept shift CBPE cannot
    # see: the scores, and so the estimate, look as they always did).
    for site in ("north", "south"):
        made = monitored.predict_online(site, DAY0 + timedelta(hours=8), 160)
        middle = sorted(score for _, score in made)[len(made) // 2]
        for index, (prediction_id, score) in enumerate(made):
            outcome = int(score > middle) if site == "north" else int(index % 5 == 0)
            record_outcome(monitored.database, CLINICIAN, prediction_id, outcome=outcome,
                           observed_at=DAY0 + timedelta(days=1), source="ehr")
    _run(monitored, now=DAY0 + timedelta(days=3, hours=1))
    with monitored.database.session() as session:
        gaps = {r.site: r for r in read_results(session, model=MODEL, metric_id="performance.auroc_gap")}
        estimated = {r.site: r.value for r in read_results(session, model=MODEL,
                                                            metric_id="estimated_performance.auroc")}
    north, south = gaps["north"], gaps["south"]
    assert north.status == "ok" and north.value > 0 and north.details["measured"] == 1.0
    assert south.status == "flagged" and south.value < -0.05 and south.details["positive_patients"] >= 20
    assert south.details["estimated"] == pytest.approx(estimated["south"])
    assert south.details["measured_high"] < south.details["estimated"]
    assert south.value == pytest.approx(south.details["measured"] - south.details["estimated"])
    assert abs(south.details["measured"] - 0.5) < 0.2


def test_the_auroc_gap_waits_for_matured_labels(monitored):
    made = monitored.predict_online("north", DAY0 + timedelta(hours=8), 120)
    for prediction_id, _ in made:
        record_outcome(monitored.database, CLINICIAN, prediction_id, outcome=0, observed_at=DAY0 + timedelta(days=1),
                       source="ehr")
    _run(monitored, now=DAY0 + timedelta(days=1, hours=1))  # the horizon has not passed: nothing yet
    with monitored.database.session() as session:
        assert read_results(session, model=MODEL, metric_id="performance.auroc_gap") == []
    _run(monitored, now=DAY0 + timedelta(days=3, hours=1))  # one outcome class only: no AUROC, so no gap
    with monitored.database.session() as session:
        (gap,) = read_results(session, model=MODEL, metric_id="performance.auroc_gap")
    assert gap.status == "insufficient_data" and gap.value is None


def test_the_auroc_gap_is_not_judged_on_a_handful_of_patients_with_the_outcome(monitored):
    made = monitored.predict_online("north", DAY0 + timedelta(hours=8), 160)
    patients = 160 // 2 + 1  # predict_online's patient of prediction i is i % 81
    for index, (prediction_id, _) in enumerate(made):  # 8 patients with the outcome, unrelated to the score
        record_outcome(monitored.database, CLINICIAN, prediction_id, outcome=int(index % patients < 8),
                       observed_at=DAY0 + timedelta(days=1), source="ehr")
    _run(monitored, now=DAY0 + timedelta(days=3, hours=1))
    with monitored.database.session() as session:
        (auroc,) = read_results(session, model=MODEL, metric_id="performance.auroc")
        (gap,) = read_results(session, model=MODEL, metric_id="performance.auroc_gap")
    assert auroc.value is not None and auroc.details["positive_patients"] == 8
    assert gap.status == "insufficient_data" and gap.value is None
    assert gap.details["min_positive_patients"] == 20
