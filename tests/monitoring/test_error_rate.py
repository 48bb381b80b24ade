"""Error rates from real failed predictions: requests refused for their inputs and requests the service
failed (an artifact corrupted in the store) are counted per hour, version, site and code, leave no row
in the prediction log and no patient data in the counters, and monitoring reports them over the
window, the same on a rerun."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
from scipy.stats import binomtest
from sqlalchemy import inspect, select

from tests.governance.plans import register_sites
from tests.monitoring.conftest import CLINICIAN, DAY0, MODEL, OPERATOR, feature_rows
from vitalops.artifacts import open_store, read_bundle
from vitalops.db.tables.serving import PredictionRow, ServingErrorCountRow
from vitalops.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from vitalops.monitoring.engine import parse_window, run_monitoring
from vitalops.monitoring.operations import ERROR_RATE_MAX
from vitalops.monitoring.results import read_results
from vitalops.registry.versions import get_version
from vitalops.serving import PredictionRequest, Runtime, ServingContext, predict

ONLINE = 60
AT = DAY0 + timedelta(hours=13)


def _features(monitored, index: int) -> dict[str, float | None]:
    columns = feature_rows(monitored.rng, 1)
    return {name: (None if math.isnan(columns[name][0]) else float(columns[name][0]))
            for name in monitored.feature_names} | {"lactate_last": None, "age": 50.0 + index}


def _corrupt_artifact(monitored) -> Callable[[], None]:
    """Corrupt version 1's model blob in the store; returns what restores it."""
    store = open_store(monitored.settings.artifacts_root)
    with monitored.database.session() as session:
        artifact = get_version(session, MODEL, 1).artifact_sha256
    blob = Path(urlparse(store.uri(read_bundle(store, artifact).model_sha256)).path)
    blob.chmod(0o644)
    original = blob.read_bytes()
    blob.write_bytes(original[:-5] + b"xxxxx")
    return lambda: blob.write_bytes(original)


def _fail(monitored, context, request: PredictionRequest, error: type[Exception], name: str = MODEL) -> None:
    with pytest.raises(error):
        predict(monitored.database, context, CLINICIAN, name, request)


def _make_failures(monitored) -> list[str]:
    """60 online predictions at north, then 3 refused inputs and 5 server failures there in one hour,
    2 requests at a site without a champion, and requests that never reached the model."""
    monitored.predict_online("north", DAY0 + timedelta(hours=2), ONLINE)
    keys = [f"f{i:063d}" for i in range(10)]
    missing = _features(monitored, 0)
    del missing["age"]
    for i in range(3):
        _fail(monitored, monitored.context, PredictionRequest(site="north", features=missing, patient_key=keys[i],
                                                              at=AT + timedelta(minutes=i)), InvalidInput)
    restore = _corrupt_artifact(monitored)
    # a worker started after the artifact was corrupted: it cannot load the version
    fresh = ServingContext(Runtime(monitored.context.runtime.store, monitored.context.terminology),
                           monitored.context.facts, monitored.context.pseudonymizer, monitored.context.terminology)
    for i in range(5):
        _fail(monitored, fresh, PredictionRequest(site="north", features=_features(monitored, i),
                                                  patient_key=keys[3 + i], at=AT + timedelta(minutes=10 + i)),
              ServiceUnavailable)
    restore()  # the operator restores it; monitoring reads the version's artifact for its reference
    register_sites(monitored.database, "east")
    for i in range(2):
        _fail(monitored, monitored.context, PredictionRequest(site="east", features=_features(monitored, i),
                                                              patient_key=keys[8 + i], at=AT), Conflict)
    _fail(monitored, monitored.context, PredictionRequest(site="north", features=_features(monitored, 0), at=AT),
          NotFound, name="no-such-model")
    _fail(monitored, monitored.context, PredictionRequest(site="nowhere", features=_features(monitored, 0), at=AT),
          InvalidInput)
    return keys


def _run(monitored, window: str = "1d") -> None:
    run_monitoring(monitored.database, OPERATOR, lake_root=monitored.lake_root,
                   store=open_store(monitored.settings.artifacts_root), model=MODEL, window=parse_window(window),
                   since=DAY0, now=DAY0 + timedelta(days=1, hours=1))


def _results(monitored, metric_id: str, site: str = "north", version: int | None = None):
    with monitored.database.session() as session:
        return [r for r in read_results(session, model=MODEL, metric_id=metric_id, site=site, version=version)
                if r.window_end - r.window_start == timedelta(days=1)]


def test_failed_requests_are_counted_by_hour_version_site_and_code_without_a_log_row(monitored):
    keys = _make_failures(monitored)
    with monitored.database.session() as session:
        assert session.query(PredictionRow).count() == ONLINE
        rows = session.execute(select(ServingErrorCountRow)).scalars().all()
        counted = sorted((r.version, r.site, r.hour_start, r.served, r.code, r.http_status, r.count) for r in rows)
    columns = {c["name"] for c in inspect(monitored.database.engine).get_columns("serving_error_counts")}
    hour = AT.replace(minute=0)
    assert counted == [(0, "east", hour, True, "conflict", 409, 2),
                       (1, "north", hour, True, "invalid_input", 422, 3),
                       (1, "north", hour, True, "service_unavailable", 503, 5)]
    assert columns == {"id", "model_id", "version", "site", "hour_start", "served", "code", "http_status", "count"}
    stored = {str(value) for row in rows for value in vars(row).values()}
    assert not stored & set(keys)


def test_monitoring_reports_the_error_rates_of_the_window_and_a_rerun_changes_nothing(monitored):
    _make_failures(monitored)
    _run(monitored)
    requests = ONLINE + 3 + 5
    for version in (1, 0):  # the version, and the model at the site (the same failures here)
        [server] = _results(monitored, "ops.error_rate", version=version)
        [refused] = _results(monitored, "ops.input_error_rate", version=version)
        assert server.window_start == DAY0 and server.n == requests == refused.n
        assert server.value == pytest.approx(5 / requests) and refused.value == pytest.approx(3 / requests)
        p = binomtest(5, requests, ERROR_RATE_MAX, alternative="greater").pvalue
        assert p < 0.01 and server.status == "flagged" and refused.status == "ok"
        assert server.details["binomial_pvalue"] == pytest.approx(p)
        assert server.details["errors_by_code"] == {"invalid_input": 3, "service_unavailable": 5}
        assert server.details["online_predictions"] == ONLINE
    [east] = _results(monitored, "ops.error_rate", site="east", version=0)
    assert east.n == 2 and east.value is None and east.status == "insufficient_data"
    assert east.details["errors_by_code"] == {"conflict": 2}
    assert _results(monitored, "ops.error_rate", site="east", version=1) == []
    assert _results(monitored, "ops.error_rate", site="south") == []
    before = {r.key(): (r.value, r.n, r.status, r.details)
              for metric in ("ops.error_rate", "ops.input_error_rate") for site in ("north", "east")
              for r in _results(monitored, metric, site=site)}
    _run(monitored)
    after = {r.key(): (r.value, r.n, r.status, r.details)
             for metric in ("ops.error_rate", "ops.input_error_rate") for site in ("north", "east")
             for r in _results(monitored, metric, site=site)}
    assert after == before and len(after) == 6


def test_a_window_holds_the_failures_of_its_hours_only(monitored):
    _make_failures(monitored)
    _run(monitored, window="6h")
    with monitored.database.session() as session:
        by_start = {r.window_start: r for r in read_results(session, model=MODEL, metric_id="ops.error_rate",
                                                             site="north", version=1)}
    # the online predictions at 02:00 fall in 00:00-06:00, the failures at 13:00 in 12:00-18:00
    assert set(by_start) == {DAY0, DAY0 + timedelta(hours=12)}
    assert by_start[DAY0].value == 0.0 and by_start[DAY0].n == ONLINE
    failed = by_start[DAY0 + timedelta(hours=12)]
    assert failed.n == 8 and failed.value is None and failed.status == "insufficient_data"
    assert failed.details["server_errors"] == 5 and failed.details["input_errors"] == 3


def test_a_run_for_one_site_counts_only_that_sites_failures(monitored):
    _make_failures(monitored)
    run_monitoring(monitored.database, OPERATOR, lake_root=monitored.lake_root,
                   store=open_store(monitored.settings.artifacts_root), model=MODEL, window=parse_window("1d"),
                   site="north", since=DAY0, now=DAY0 + timedelta(days=1, hours=1))
    assert _results(monitored, "ops.error_rate", site="east") == []
    [north] = _results(monitored, "ops.error_rate", version=0)
    assert north.n == ONLINE + 8
