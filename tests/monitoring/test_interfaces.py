"""``/v1/monitoring`` on a real server and ``vitalops monitor`` through the real entry point."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import LiveServer, bearer
from tests.monitoring.conftest import DAY0, MODEL

SINCE = DAY0.isoformat()
UNTIL = (DAY0 + timedelta(days=2)).isoformat()


@pytest.fixture
def scored(monitored, tmp_path):
    monitored.score_day(tmp_path, "north", 0, 150)
    monitored.score_day(tmp_path, "south", 0, 150, scale={"creatinine_last": 88.42})
    monitored.score_day(tmp_path, "north", 1, 150)
    return monitored


def test_operators_run_and_readers_read_the_series_over_http(scored, make_user):
    _, operator = make_user("operator")
    _, auditor = make_user("auditor")
    _, clinician = make_user("clinician")
    import httpx

    with LiveServer(scored.settings, scored.database) as server, httpx.Client(base_url=server.url,
                                                                               timeout=60) as client:
        body = {"model": MODEL, "since": SINCE, "until": UNTIL}
        assert client.post("/v1/monitoring/runs", json=body, headers=bearer(clinician)).status_code == 403
        run = client.post("/v1/monitoring/runs", json=body, headers=bearer(operator))
        assert run.status_code == 201, run.text
        assert run.json()["windows"] == 2
        series = client.get("/v1/monitoring/results", headers=bearer(auditor),
                            params={"model": MODEL, "metric": "ops.volume", "site": "north"})
        assert series.status_code == 200
        assert [(r["window_start"][:10], r["value"]) for r in series.json()["results"]] == [
            ("2026-03-02", 150.0), ("2026-03-03", 150.0)]
        drift = client.get("/v1/monitoring/results", headers=bearer(auditor),
                           params={"model": MODEL, "metric": "input_drift.psi/creatinine_last", "site": "south"})
        assert [r["status"] for r in drift.json()["results"]] == ["flagged"]
        later = client.get("/v1/monitoring/results", headers=bearer(auditor),
                           params={"model": MODEL, "metric": "ops.volume", "since": (DAY0 + timedelta(days=1))
                                   .isoformat()})
        assert len(later.json()["results"]) == 1
        unknown = client.get("/v1/monitoring/results", headers=bearer(auditor),
                             params={"model": MODEL, "metric": "drift.everything"})
        assert unknown.status_code == 422
        assert unknown.headers["content-type"].startswith("application/problem+json")
        assert "unknown metric" in unknown.json()["detail"]
        assert client.get("/v1/monitoring/results", headers=bearer(auditor),
                          params={"model": "nope"}).status_code == 404
        assert client.get("/v1/monitoring/results", headers=bearer(clinician),
                          params={"model": MODEL}).status_code == 403
        assert client.get("/v1/monitoring/results", headers=bearer(auditor),
                          params={"model": MODEL, "limit": 10**9}).status_code == 422
        assert client.post("/v1/monitoring/runs", json={"window": "1w"}, headers=bearer(operator)).status_code == 422


def test_monitor_run_and_show_on_the_command_line(scored, cli):
    result = cli("monitor", "run", "--model", MODEL, "--since", SINCE, "--until", UNTIL, "--json")
    assert result.exit_code == 0, result.stderr
    summary = result.json()
    assert summary["windows"] == 2
    assert any(f["metric_id"] == "input_drift.psi/creatinine_last" and f["site"] == "south"
               for f in summary["flagged"])
    again = cli("monitor", "run", "--model", MODEL, "--since", SINCE, "--until", UNTIL, "--json")
    assert again.json()["results"] == summary["results"]
    shown = cli("monitor", "show", "--model", MODEL, "--metric", "input_drift.psi", "--site", "south", "--json")
    assert shown.exit_code == 0
    assert {r["metric_id"] for r in shown.json()["results"]} == {f"input_drift.psi/{n}" for n in scored.feature_names}
    table = cli("monitor", "show", "--model", MODEL, "--metric", "ops.volume")
    assert table.exit_code == 0 and "ops.volume" in table.stdout and "north" in table.stdout
    people = cli("monitor", "run", "--model", MODEL, "--since", SINCE, "--until", UNTIL)
    assert people.exit_code == 0 and "flagged" in people.stdout
    assert cli("monitor", "run", "--window", "5h").exit_code == 2
    assert cli("monitor", "show", "--model", MODEL, "--metric", "nonsense").exit_code == 2
