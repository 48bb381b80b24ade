"""``vitalops alerts ...`` and ``vitalops incidents ...`` through the real entry point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.monitoring.alerting import DAY0, MODEL, RULES, build_model, result, seed


def test_rules_alerts_and_incidents_from_the_command_line(cli, database, tmp_path):
    build_model(database)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    filed = cli("alerts", "rules", "set", MODEL, str(rules), "--json")
    assert filed.exit_code == 0, filed.stderr
    assert filed.json()["rule_set"] == 1 and filed.json()["rules"] == ["score-drift", "creatinine-drift"]
    shown = cli("alerts", "rules", "show", MODEL)
    assert shown.exit_code == 0 and "rollback" in shown.stdout and filed.json()["spec_hash"] in shown.stdout
    document = cli("alerts", "rules", "show", MODEL, "--json").json()
    assert document["rules"][0]["metric"] == "prediction_drift.score_psi" and document["spec_yaml"] == RULES
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.replace("prediction_drift.score_psi", "prediction_drift.nope"), encoding="utf-8")
    refused = cli("alerts", "rules", "set", MODEL, str(bad))
    assert refused.exit_code == 2 and "score-drift" in refused.stderr and "metric" in refused.stderr

    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    offset = (yesterday - DAY0).days  # the command judges now: seed yesterday's window
    seed(database, result("prediction_drift.score_psi", 2, "north", offset, 0.45),
         result("prediction_drift.score_psi", 1, "south", offset, 0.01, n=10))
    judged = cli("alerts", "evaluate", MODEL)
    assert judged.exit_code == 0, judged.stderr
    assert "1 opened, 0 repeated, 1 with insufficient data" in judged.stdout
    states = {(j["site"], j["state"], j["value"]) for j in cli("alerts", "evaluate", MODEL, "--json").json()["judged"]}
    assert states == {("north", "breach", 0.45), ("south", "insufficient_data", None)}

    listed = cli("alerts", "list", "--model", MODEL, "--state", "open", "--json")
    [alert] = listed.json()
    assert (alert["version"], alert["site"], alert["action_outcome"]) == (2, "north", "rolled_back")
    table = cli("alerts", "list")
    assert table.exit_code == 0 and "1 alert" in table.stdout and "open" in table.stdout

    opened = cli("incidents", "open", "--alert", str(alert["id"]), "--json")
    assert opened.exit_code == 0, opened.stderr
    incident = opened.json()["id"]
    assert cli("alerts", "ack", str(alert["id"]), "--reason", "paging the model owner").exit_code == 0
    resolved = cli("alerts", "resolve", str(alert["id"]), "--reason", "canary withdrawn", "--json")
    assert resolved.json()["state"] == "resolved"
    again = cli("alerts", "ack", str(alert["id"]), "--reason", "late", "--json")
    assert again.exit_code == 2 and again.json()["error"]["code"] == "conflict"

    timeline = cli("incidents", "show", str(incident), "--json").json()["timeline"]
    actions = [event["action"] for event in timeline]
    assert {"alert.opened", "alert.action", "deployment.rollback", "incident.opened", "alert.acknowledged",
            "alert.resolved", "deployment.deploy"} <= set(actions)
    assert actions.index("alert.opened") < actions.index("alert.resolved")
    assert cli("incidents", "show", str(incident)).exit_code == 0
    closed = cli("incidents", "close", str(incident), "--findings", "the canary's scores drifted; cause: a unit "
                 "change at north", "--json")
    assert closed.json()["state"] == "closed" and "unit change" in closed.json()["findings"]
    assert cli("incidents", "close", str(incident), "--findings", "twice").exit_code == 2
    listed_incidents = cli("incidents", "list", "--model", MODEL, "--json").json()
    assert [i["id"] for i in listed_incidents] == [incident] and listed_incidents[0]["alerts"] == [alert["id"]]
