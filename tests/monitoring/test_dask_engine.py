"""The same aggregation on a Dask cluster: partial aggregates per partition summed on the client give
exactly the local engine's aggregates, and so the same stored results, row for row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.monitoring.conftest import DAY0, MODEL, OPERATOR
from vitalops.artifacts import open_store
from vitalops.db.tables.monitoring import MonitoringResultRow
from vitalops.errors import InvalidInput
from vitalops.monitoring.engine import run_monitoring


def _results(monitored) -> dict:
    with monitored.database.session() as session:
        return {(r.metric_id, r.version, r.site, r.window_start): (r.value, r.n, r.status, r.details_json)
                for r in session.scalars(select(MonitoringResultRow))}


def test_the_dask_engine_stores_the_local_engines_results_row_for_row(monitored, tmp_path):
    distributed = pytest.importorskip("distributed")
    monitored.score_day(tmp_path, "north", 0, 240)
    monitored.score_day(tmp_path, "south", 0, 240, scale={"creatinine_last": 88.42})
    monitored.predict_online("north", DAY0 + timedelta(hours=20), 30)  # rows with latencies, from the database
    options = {"lake_root": monitored.lake_root, "store": open_store(monitored.settings.artifacts_root),
               "model": MODEL, "now": DAY0 + timedelta(days=1, hours=1)}
    run_monitoring(monitored.database, OPERATOR, **options)
    local = _results(monitored)
    with monitored.database.session() as session:
        session.execute(MonitoringResultRow.__table__.delete())
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        run_monitoring(monitored.database, OPERATOR, engine="dask", scheduler=cluster.scheduler_address, **options)
    on_dask = _results(monitored)
    assert len(local) > 100
    assert on_dask == local
    with pytest.raises(InvalidInput):
        run_monitoring(monitored.database, OPERATOR, engine="dask", **options)


def test_partial_aggregates_sum_to_the_whole(monitored, tmp_path):
    from vitalops.monitoring import aggregates as agg

    monitored.score_day(tmp_path, "north", 0, 200)
    monitored.predict_online("north", DAY0 + timedelta(hours=3), 20)
    with monitored.database.session() as session:
        rows = agg.prediction_rows(session, monitored.lake_root, MODEL, DAY0, DAY0 + timedelta(days=1), None)
    names = {1: monitored.feature_names}
    whole = agg.aggregate_predictions(rows, 86_400_000_000, names)
    split = agg.aggregate_predictions(rows, 86_400_000_000, names, partitions=7)
    assert whole.volume == split.volume == {(1, "north", agg.epoch_us(DAY0)): 220}
    assert whole.latency == split.latency and whole.latency[(1, "north", agg.epoch_us(DAY0))][0] == 20
    key = (1, "north", agg.epoch_us(DAY0))
    for name in monitored.feature_names:
        a, b = whole.features[key][name], split.features[key][name]
        assert a.values.tolist() == b.values.tolist() and a.counts.tolist() == b.counts.tolist()
        assert a.missing == b.missing and a.total == 220
    assert whole.scores[key].counts.tolist() == split.scores[key].counts.tolist()
