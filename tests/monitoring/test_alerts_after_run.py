"""A monitoring run over served predictions judges the alert rules: a site sending creatinine in
umol/L under mg/dL drifts the feature there, and its rule opens an alert; the champion is not rolled
back."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import LiveServer, bearer
from tests.monitoring.conftest import DAY0, MODEL, OPERATOR
from vitalops.monitoring.alert_rules import set_rules
from vitalops.monitoring.alerts import list_alerts
from vitalops.registry.deployments import list_deployments

RULES = """
rules:
  - id: input-drift
    metric: input_drift.psi
    window: 1d
    comparison: ">="
    threshold: 0.2
    min_n: 100
    severity: warning
    action: rollback
"""


def test_a_monitoring_run_over_http_opens_the_alert_its_rule_names(monitored, tmp_path, make_user):
    monitored.score_day(tmp_path, "north", 0, 150)
    monitored.score_day(tmp_path, "south", 0, 150, scale={"creatinine_last": 88.42})
    set_rules(monitored.database, OPERATOR, MODEL, RULES)
    _, operator = make_user("operator")
    import httpx

    with LiveServer(monitored.settings, monitored.database) as server, httpx.Client(base_url=server.url,
                                                                                    timeout=60) as client:
        run = client.post("/v1/monitoring/runs", headers=bearer(operator), json={
            "model": MODEL, "since": DAY0.isoformat(), "until": (DAY0 + timedelta(days=1)).isoformat()})
    assert run.status_code == 201, run.text
    [evaluation] = run.json()["alerts"]
    breaches = {(j["metric"], j["site"]) for j in evaluation["judged"] if j["state"] == "breach"}
    assert ("input_drift.psi/creatinine_last", "south") in breaches
    assert not any(site == "north" for _, site in breaches)
    alerts = list_alerts(monitored.database, OPERATOR, model=MODEL)
    creatinine = [a for a in alerts if a.metric == "input_drift.psi/creatinine_last"]
    assert [(a.site, a.action_outcome, a.severity) for a in creatinine] == [("south", "champion_kept", "critical")]
    with monitored.database.session() as session:
        assert {(s.site, s.slot, s.version) for s in list_deployments(session, MODEL)} == {
            ("north", "champion", 1), ("south", "champion", 1)}


def test_monitor_run_on_the_command_line_judges_the_rules(monitored, tmp_path, cli):
    monitored.score_day(tmp_path, "south", 0, 150, scale={"creatinine_last": 88.42})
    set_rules(monitored.database, OPERATOR, MODEL, RULES)
    args = ("monitor", "run", "--model", MODEL, "--since", DAY0.isoformat(), "--until",
            (DAY0 + timedelta(days=1)).isoformat())
    people = cli(*args)
    assert people.exit_code == 0, people.stderr
    assert "alerts of deterioration (rule set 1):" in people.stdout and "opened" in people.stdout
    again = cli(*args, "--json")
    [evaluation] = again.json()["alerts"]
    assert evaluation["opened"] == [] and evaluation["repeated"] == []  # the same windows judged again
    listed = cli("alerts", "list", "--model", MODEL, "--json").json()
    assert any(a["metric"] == "input_drift.psi/creatinine_last" and a["site"] == "south" for a in listed)
