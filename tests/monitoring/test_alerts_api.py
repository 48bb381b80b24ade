"""``/v1/alerts`` on a live server: permissions by the matrix, bounded parameters, problem+json,
the lifecycle, and the open-alerts gauge in ``/metrics``."""

from __future__ import annotations

from tests.conftest import bearer
from tests.monitoring.alerting import MODEL, NOW, OPERATOR, RULES, build_model, result, seed
from vitalops.monitoring.alert_rules import set_rules
from vitalops.monitoring.alerts import evaluate_alerts
from vitalops.monitoring.notifiers import LogNotifier


def test_alerts_over_http(database, api_client, make_user):
    build_model(database)
    set_rules(database, OPERATOR, MODEL, RULES)
    seed(database, result("prediction_drift.score_psi", 2, "north", 2, 0.45),
         result("prediction_drift.score_psi", 1, "south", 2, 0.3))
    evaluate_alerts(database, OPERATOR, MODEL, now=NOW, notifiers=[LogNotifier()])
    _, operator = make_user("operator", "olga")
    _, auditor = make_user("auditor", "audrey")
    _, clinician = make_user("clinician", "casey")

    listed = api_client.get("/v1/alerts", params={"model": MODEL, "state": "open"}, headers=bearer(auditor))
    assert listed.status_code == 200
    alerts = {a["version"]: a for a in listed.json()["alerts"]}
    assert alerts[2]["action_outcome"] == "rolled_back" and alerts[1]["severity"] == "critical"
    assert not any("patient" in key for alert in alerts.values() for key in alert)
    one = api_client.get(f"/v1/alerts/{alerts[2]['id']}", headers=bearer(auditor)).json()
    assert one["deliveries"] == [{**one["deliveries"][0], "notifier": "log", "outcome": "delivered"}]

    metrics = api_client.get("/metrics").text
    assert 'vitalops_alerts_open{model="sepsis",severity="critical",site="south"} 1.0' in metrics
    assert 'vitalops_alerts_open{model="sepsis",severity="warning",site="north"} 1.0' in metrics

    denied = api_client.get("/v1/alerts", headers=bearer(clinician))
    assert denied.status_code == 403 and denied.headers["content-type"] == "application/problem+json"
    refused = api_client.post(f"/v1/alerts/{alerts[1]['id']}/ack", json={"reason": "mine"}, headers=bearer(auditor))
    assert refused.status_code == 403
    assert api_client.get("/v1/alerts", headers={}).status_code == 401
    for params in ({"state": "closed"}, {"limit": 501}, {"offset": -1}, {"model": "x" * 201}):
        bad = api_client.get("/v1/alerts", params=params, headers=bearer(operator))
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert api_client.post("/v1/alerts/0/ack", json={"reason": "x"}, headers=bearer(operator)).status_code == 422
    assert api_client.post(f"/v1/alerts/{alerts[1]['id']}/ack", json={"reason": ""},
                           headers=bearer(operator)).status_code == 422
    missing = api_client.post("/v1/alerts/99999/ack", json={"reason": "x"}, headers=bearer(operator))
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"

    champion = alerts[1]["id"]
    acked = api_client.post(f"/v1/alerts/{champion}/ack", json={"reason": "owner paged"}, headers=bearer(operator))
    assert acked.status_code == 200 and (acked.json()["state"], acked.json()["acknowledged_by"]) == (
        "acknowledged", "olga")
    resolved = api_client.post(f"/v1/alerts/{champion}/resolve", json={"reason": "threshold re-agreed"},
                               headers=bearer(operator))
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
    again = api_client.post(f"/v1/alerts/{champion}/resolve", json={"reason": "twice"}, headers=bearer(operator))
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert "resolved" in again.json()["detail"]
    assert 'severity="critical",site="south"' not in api_client.get("/metrics").text


def test_incidents_over_http(database, api_client, make_user):
    build_model(database)
    set_rules(database, OPERATOR, MODEL, RULES)
    seed(database, result("prediction_drift.score_psi", 2, "north", 2, 0.45))
    [alert_id] = evaluate_alerts(database, OPERATOR, MODEL, now=NOW, notifiers=[LogNotifier()])["opened"]
    _, operator = make_user("operator", "olga")
    _, auditor = make_user("auditor", "audrey")

    assert api_client.post("/v1/incidents", json={"alert": alert_id}, headers=bearer(auditor)).status_code == 403
    opened = api_client.post("/v1/incidents", json={"alert": alert_id, "title": "canary drift"},
                             headers=bearer(operator))
    assert opened.status_code == 201 and opened.json()["alerts"] == [alert_id]
    incident = opened.json()["id"]
    assert api_client.post("/v1/incidents", json={"alert": alert_id}, headers=bearer(operator)).status_code == 409
    assert api_client.post("/v1/incidents", json={"alert": 0}, headers=bearer(operator)).status_code == 422
    assert api_client.post("/v1/incidents", json={"alert": 999}, headers=bearer(operator)).status_code == 404
    shown = api_client.get(f"/v1/incidents/{incident}", headers=bearer(auditor)).json()
    assert {"alert.opened", "deployment.rollback", "incident.opened"} <= {e["action"] for e in shown["timeline"]}
    assert api_client.get("/v1/incidents/0", headers=bearer(auditor)).status_code == 422
    closed = api_client.post(f"/v1/incidents/{incident}/close", json={"findings": "a unit change at north"},
                             headers=bearer(operator))
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    again = api_client.post(f"/v1/incidents/{incident}/close", json={"findings": "twice"}, headers=bearer(operator))
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert api_client.post(f"/v1/incidents/{incident}/close", json={"findings": ""},
                           headers=bearer(operator)).status_code == 422
    listed = api_client.get("/v1/incidents", params={"model": MODEL, "state": "closed"}, headers=bearer(auditor))
    assert [i["id"] for i in listed.json()["incidents"]] == [incident]


def test_rules_over_http(database, api_client, make_user):
    build_model(database)
    _, operator = make_user("operator", "olga")
    _, auditor = make_user("auditor", "audrey")
    assert api_client.get(f"/v1/alerts/rules/{MODEL}", headers=bearer(auditor)).status_code == 404
    assert api_client.put(f"/v1/alerts/rules/{MODEL}", json={"rules_yaml": RULES},
                          headers=bearer(auditor)).status_code == 403
    filed = api_client.put(f"/v1/alerts/rules/{MODEL}", json={"rules_yaml": RULES}, headers=bearer(operator))
    assert filed.status_code == 200 and filed.json()["number"] == 1
    shown = api_client.get(f"/v1/alerts/rules/{MODEL}", headers=bearer(auditor)).json()
    assert shown["spec_hash"] == filed.json()["spec_hash"] and shown["spec_yaml"] == RULES
    bad = api_client.put(f"/v1/alerts/rules/{MODEL}", json={"rules_yaml": RULES.replace("action: none",
                                                                                       "action: promote")},
                         headers=bearer(operator))
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert "creatinine-drift" in bad.json()["detail"] and "action" in bad.json()["detail"]
    assert api_client.put("/v1/alerts/rules/nope", json={"rules_yaml": "rules: []"},
                          headers=bearer(operator)).status_code == 404
