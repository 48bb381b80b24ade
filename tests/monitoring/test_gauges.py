"""The latest value of each monitored metric in ``/metrics`` on a live server: after a run over HTTP,
after a scheduled run (on every worker), and at start-up from the stored results; results without a
value are left out."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, bearer
from tests.monitoring.conftest import DAY0, MODEL, Monitored
from vitalops.core.clock import utcnow
from vitalops.core.settings import Settings
from vitalops.monitoring.results import latest_results

Series = dict[tuple[str, int, str, str], float]


def _scrape(client: httpx.Client) -> tuple[Series, Series]:
    """(values, flags) by (model, version, site, metric)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    found: dict[str, Series] = {"vitalops_monitoring_metric": {}, "vitalops_monitoring_metric_flagged": {}}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name in found:
                labels = sample.labels
                found[sample.name][(labels["model"], int(labels["version"]), labels["site"], labels["metric"])] = \
                    sample.value
    return found["vitalops_monitoring_metric"], found["vitalops_monitoring_metric_flagged"]


def test_a_run_over_http_exports_the_latest_values_and_a_restart_loads_them(monitored: Monitored, tmp_path,
                                                                              make_user):
    monitored.score_day(tmp_path, "north", 0, 150)
    monitored.score_day(tmp_path, "south", 0, 150, scale={"creatinine_last": 88.42})
    _, operator = make_user("operator")
    with LiveServer(monitored.settings, monitored.database) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        assert _scrape(client) == ({}, {})
        run = client.post("/v1/monitoring/runs", headers=bearer(operator), json={
            "model": MODEL, "since": DAY0.isoformat(), "until": (DAY0 + timedelta(days=1)).isoformat()})
        assert run.status_code == 201, run.text
        values, flags = _scrape(client)
    creatinine = "input_drift.psi/creatinine_last"
    assert flags[(MODEL, 1, "south", creatinine)] == 1.0 and flags[(MODEL, 1, "north", creatinine)] == 0.0
    assert values[(MODEL, 1, "south", creatinine)] > values[(MODEL, 1, "north", creatinine)]
    assert values[(MODEL, 1, "north", "ops.volume")] == 150.0
    with monitored.database.read_session() as session:
        latest = latest_results(session, model=MODEL)
    valued = {(MODEL, r.version, r.site, r.metric_id): r.value for r in latest if r.value is not None}
    assert any(r.status == "insufficient_data" for r in latest)  # e.g. latency: batch scoring times none
    assert values == valued and set(flags) == set(values)
    assert {version for _, version, _, _ in values} <= {0, 1}
    with LiveServer(monitored.settings, monitored.database) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        assert _scrape(client) == (values, flags)  # loaded from the stored results at start-up


def test_a_scheduled_run_refreshes_the_gauges_of_every_worker(monitored: Monitored, tmp_path):
    monitored.score_day(tmp_path, "north", (utcnow() - DAY0).days - 2, 120)
    settings = Settings(**{**monitored.settings.model_dump(), "monitor_every": "300ms"})
    key = (MODEL, 1, "north", "ops.volume")
    with LiveServer(settings, monitored.database) as first, LiveServer(settings, monitored.database) as second, \
            httpx.Client(timeout=30) as client:
        deadline = time.monotonic() + 60
        seen: list[float | None] = [None, None]
        while time.monotonic() < deadline and seen != [120.0, 120.0]:
            for index, server in enumerate((first, second)):
                client.base_url = httpx.URL(server.url)
                seen[index] = _scrape(client)[0].get(key)
            time.sleep(0.1)
    assert seen == [120.0, 120.0]
