"""Alert rules, evaluation, deduplication, the lifecycle and the actions, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.governance.plans import ALICE
from tests.monitoring.alerting import CLINICIAN, MODEL, NOW, OPERATOR, RULES, build_model, result, seed
from vitalops.audit import list_events, verify_chain
from vitalops.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from vitalops.monitoring.alert_rules import get_rules, parse_rules, set_rules
from vitalops.monitoring.alerts import acknowledge_alert, evaluate_alerts, get_alert, list_alerts, resolve_alert
from vitalops.monitoring.notifiers import LogNotifier
from vitalops.registry.deployments import list_deployments

RULE = """
rules:
  - id: r1
    metric: {metric}
    window: {window}
    comparison: "{comparison}"
    threshold: 0.2
    min_n: 10
    action: {action}
"""


def _rule(**changes: str) -> str:
    fields = {"metric": "prediction_drift.score_psi", "window": "1d", "comparison": ">=", "action": "none"} | changes
    return RULE.format(**fields)


def _evaluate(database, now=NOW):
    return evaluate_alerts(database, OPERATOR, MODEL, now=now, notifiers=[LogNotifier()])


@pytest.mark.parametrize(("changes", "field"), [
    ({"metric": "prediction_drift.no_such"}, "metric"),
    ({"metric": "performance.auroc/extra"}, "metric"),
    ({"comparison": "=="}, "comparison"),
    ({"action": "promote"}, "action"),
    ({"window": "1w"}, "window"),
])
def test_a_bad_rule_is_refused_naming_the_rule_and_field(changes, field):
    with pytest.raises(InvalidInput) as caught:
        parse_rules(_rule(**changes), model=MODEL)
    assert caught.value.details == {"rule": "r1", "field": field}
    assert "alert rule 'r1'" in caught.value.message and field in caught.value.message


def test_unknown_fields_duplicates_and_another_model_are_refused():
    with pytest.raises(InvalidInput) as caught:
        parse_rules(_rule() + "    colour: red\n", model=MODEL)
    assert caught.value.details["field"] == "colour"
    with pytest.raises(InvalidInput, match="appears twice"):
        parse_rules(_rule() + _rule().removeprefix("\nrules:\n"), model=MODEL)
    with pytest.raises(InvalidInput, match="name model"):
        parse_rules("model: other\n" + _rule(), model=MODEL)
    family = parse_rules(_rule(metric="input_drift.psi"), model=MODEL)[0]
    assert family.matches("input_drift.psi/creatinine") and not family.matches("input_drift.psi")


def test_rules_are_filed_versioned_hashed_and_audited(database):
    build_model(database)
    first = set_rules(database, OPERATOR, MODEL, RULES)
    second = set_rules(database, OPERATOR, MODEL, _rule())
    assert (first.number, second.number) == (1, 2) and first.spec_hash != second.spec_hash
    shown = get_rules(database, ALICE, MODEL)
    assert shown.number == 2 and [r.id for r in shown.rules] == ["r1"]
    with pytest.raises(PermissionDenied):
        set_rules(database, CLINICIAN, MODEL, RULES)
    with pytest.raises(InvalidInput):
        set_rules(database, OPERATOR, MODEL, _rule(metric="nope.metric"))
    with pytest.raises(NotFound):
        set_rules(database, OPERATOR, "no-such-model", _rule())
    with database.session() as session:
        events = list_events(session, object_type="model", object_id=MODEL, action="alert.rules_set")
    assert [e.payload["rule_set"] for e in events] == [2, 1] and events[1].payload["spec_hash"] == first.spec_hash


def test_a_breaching_canary_is_rolled_back_and_a_champion_is_not(database):
    build_model(database)
    set_rules(database, OPERATOR, MODEL, RULES)
    seed(database, result("prediction_drift.score_psi", 2, "north", 2, 0.45),
         result("prediction_drift.score_psi", 1, "north", 2, 0.31),
         result("prediction_drift.score_psi", 1, "south", 2, 0.05))
    summary = _evaluate(database)
    assert len(summary["opened"]) == 2
    assert {(j["version"], j["site"], j["state"]) for j in summary["judged"]} == {
        (2, "north", "breach"), (1, "north", "breach"), (1, "south", "ok")}
    alerts = {a.version: a for a in list_alerts(database, OPERATOR, model=MODEL)}
    assert alerts[2].action_outcome == "rolled_back" and alerts[2].severity == "warning"
    assert alerts[1].action_outcome == "champion_kept" and alerts[1].severity == "critical"
    with database.session() as session:
        slots = {(s.site, s.slot): s.version for s in list_deployments(session, MODEL)}
        rollbacks = list_events(session, object_type="model", object_id=MODEL, action="deployment.rollback")
        action = list_events(session, object_type="alert", object_id=str(alerts[2].id), action="alert.action")
    assert slots == {("north", "champion"): 1, ("south", "champion"): 1, ("north", "challenger"): None}
    assert len(rollbacks) == 1 and rollbacks[0].actor == "system:monitoring"
    assert "score-drift" in rollbacks[0].payload["reason"]
    evidence = action[0].payload
    assert (evidence["rule"], evidence["metric"], evidence["value"], evidence["threshold"], evidence["window"]) == (
        "score-drift", "prediction_drift.score_psi", 0.45, 0.2, "1d")
    assert evidence["outcome"] == "rolled_back" and evidence["restored_version"] is None
    assert verify_chain(database.engine).ok


def test_a_canary_behind_a_later_change_is_not_rolled_back(database):
    build_model(database)
    from vitalops.registry.deployments import apply_deployment, parse_mode

    with database.session() as session:  # the champion changed after the canary went out
        apply_deployment(session, actor=ALICE, name=MODEL, number=1, site="north", mode=parse_mode("champion"),
                         reason="re-affirmed")
    set_rules(database, OPERATOR, MODEL, RULES)
    seed(database, result("prediction_drift.score_psi", 2, "north", 2, 0.45))
    _evaluate(database)
    [alert] = list_alerts(database, OPERATOR, model=MODEL)
    assert (alert.action_outcome, alert.severity) == ("rollback_blocked", "critical")
    with database.session() as session:
        slots = {(s.site, s.slot): s.version for s in list_deployments(session, MODEL)}
    assert slots[("north", "challenger")] == 2 and slots[("north", "champion")] == 1


def test_a_repeated_breach_updates_the_unresolved_alert(database):
    build_model(database, canary=False)
    set_rules(database, OPERATOR, MODEL, RULES)
    seed(database, result("input_drift.psi/creatinine", 1, "north", 1, 0.4),
         result("input_drift.psi/creatinine", 1, "south", 1, 0.9))  # south is outside the rule's sites
    first = _evaluate(database, now=NOW - timedelta(days=1))
    assert len(first["opened"]) == 1 and not any(j["site"] == "south" for j in first["judged"])
    again = _evaluate(database, now=NOW - timedelta(days=1))
    assert again["opened"] == [] and again["repeated"] == []  # the same window judged again changes nothing
    seed(database, result("input_drift.psi/creatinine", 1, "north", 2, 0.6))
    later = _evaluate(database)
    assert later["opened"] == [] and later["repeated"] == first["opened"]
    [alert] = list_alerts(database, OPERATOR, model=MODEL)
    assert (alert.count, alert.value, alert.window_start.day) == (2, 0.6, 4)
    acknowledge_alert(database, OPERATOR, alert.id, reason="looking")
    seed(database, result("input_drift.psi/creatinine", 1, "north", 3, 0.7))
    assert _evaluate(database, now=NOW + timedelta(days=1))["repeated"] == [alert.id]  # acknowledged is unresolved
    resolve_alert(database, OPERATOR, alert.id, reason="feed fixed")
    seed(database, result("input_drift.psi/creatinine", 1, "north", 4, 0.8))
    reopened = _evaluate(database, now=NOW + timedelta(days=2))
    assert len(reopened["opened"]) == 1 and reopened["opened"] != [alert.id]


def test_below_the_minimum_sample_is_insufficient_data_never_an_alert(database):
    build_model(database)
    set_rules(database, OPERATOR, MODEL, RULES)
    seed(database, result("prediction_drift.score_psi", 2, "north", 2, 0.9, n=40),
         result("prediction_drift.score_psi", 1, "north", 2, None, n=0))
    summary = _evaluate(database)
    assert summary["opened"] == []
    assert {(j["state"], j["value"]) for j in summary["judged"]} == {("insufficient_data", None)}
    assert list_alerts(database, OPERATOR) == []


def test_a_flagged_only_rule_breaches_where_the_engine_flagged_the_result_too(database):
    build_model(database)
    set_rules(database, OPERATOR, MODEL, _rule(metric="input_drift.psi").replace(
        "    action: none\n", "    action: none\n    flagged_only: true\n"))
    assert get_rules(database, OPERATOR, MODEL).rules[0].flagged_only
    noisy = result("input_drift.psi/age", 2, "north", 2, 0.6)  # over the threshold, the test not significant
    shifted = result("input_drift.psi/age", 2, "south", 2, 0.6).model_copy(update={"status": "flagged"})
    seed(database, noisy, shifted)
    summary = _evaluate(database)
    assert {(j["site"], j["state"]) for j in summary["judged"]} == {("north", "ok"), ("south", "breach")}
    assert [(a.site, a.metric) for a in list_alerts(database, OPERATOR)] == [("south", "input_drift.psi/age")]


def test_stale_and_other_window_lengths_are_not_judged(database):
    build_model(database)
    set_rules(database, OPERATOR, MODEL, RULES)
    seed(database, result("prediction_drift.score_psi", 2, "north", -5, 0.9))
    assert _evaluate(database)["judged"] == []


def test_lifecycle_moves_are_audited_and_illegal_ones_conflict(database):
    build_model(database)
    set_rules(database, OPERATOR, MODEL, RULES)
    seed(database, result("prediction_drift.score_psi", 1, "south", 2, 0.3))
    [alert_id] = _evaluate(database)["opened"]
    with pytest.raises(PermissionDenied):
        acknowledge_alert(database, CLINICIAN, alert_id, reason="not mine")
    with pytest.raises(InvalidInput):
        acknowledge_alert(database, OPERATOR, alert_id, reason="  ")
    assert acknowledge_alert(database, OPERATOR, alert_id, reason="on it").state == "acknowledged"
    with pytest.raises(Conflict):
        acknowledge_alert(database, OPERATOR, alert_id, reason="again")
    resolved = resolve_alert(database, OPERATOR, alert_id, reason="population changed; plan updated")
    assert (resolved.state, resolved.resolved_by, resolved.acknowledged_by) == ("resolved", "otto", "otto")
    with pytest.raises(Conflict) as caught:
        resolve_alert(database, OPERATOR, alert_id, reason="again")
    assert caught.value.details == {"state": "resolved", "target": "resolved"}
    with pytest.raises(NotFound):
        resolve_alert(database, OPERATOR, 9999, reason="x")
    with database.session() as session:
        events = list_events(session, object_type="alert", object_id=str(alert_id), newest_first=False)
    assert [e.action for e in events] == ["alert.opened", "alert.action", "alert.notified", "access.denied",
                                          "alert.acknowledged", "alert.resolved"]
    assert events[-1].payload["reason"] == "population changed; plan updated" and events[-1].actor == "otto"
    assert get_alert(database, OPERATOR, alert_id)["deliveries"][0]["outcome"] == "delivered"
    assert [a.id for a in list_alerts(database, OPERATOR, state="resolved")] == [alert_id]
    with pytest.raises(InvalidInput):
        list_alerts(database, OPERATOR, state="closed")


def test_review_opens_a_governance_task_and_retrain_without_a_plan_is_refused(database):
    build_model(database)
    set_rules(database, OPERATOR, MODEL, RULES.replace("action: rollback", "action: review").replace(
        "action: none", "action: retrain"))
    seed(database, result("prediction_drift.score_psi", 1, "south", 2, 0.3),
         result("input_drift.psi/creatinine", 1, "north", 2, 0.5))
    _evaluate(database)
    alerts = {a.rule: a for a in list_alerts(database, OPERATOR, model=MODEL)}
    assert alerts["score-drift"].action_outcome == "review_opened" and alerts["score-drift"].incident is not None
    # The model has no change-control plan: the request is recorded, refused, and put to governance.
    assert alerts["creatinine-drift"].action_outcome == "retrain_refused"
    assert alerts["creatinine-drift"].incident is not None
    with database.session() as session:
        actions = {e.action for e in list_events(session, object_type="model", object_id=MODEL)}
        slots = {(s.site, s.slot): s.version for s in list_deployments(session, MODEL)}
    assert {"governance.review_requested", "model.retrain_requested", "retraining.refused",
            "incident.opened"} <= actions
    assert slots[("north", "challenger")] == 2 and slots[("north", "champion")] == 1  # nothing moved


def test_evaluation_needs_monitoring_run_and_a_model(database):
    build_model(database)
    with pytest.raises(PermissionDenied):
        evaluate_alerts(database, CLINICIAN, MODEL, now=NOW)
    assert _evaluate(database)["rule_set"] is None  # no rules filed: nothing to judge
    with pytest.raises(NotFound):
        evaluate_alerts(database, OPERATOR, "no-such-model", now=NOW)


def test_an_incident_around_an_alert_is_kept_with_the_models_record(database):
    from vitalops.monitoring.incidents import close_incident, list_incidents, open_incident, show_incident

    build_model(database)
    set_rules(database, OPERATOR, MODEL, RULES)
    seed(database, result("prediction_drift.score_psi", 2, "north", 2, 0.45))
    [alert_id] = _evaluate(database)["opened"]
    with pytest.raises(PermissionDenied):
        open_incident(database, CLINICIAN, alert_id)
    with pytest.raises(NotFound):
        open_incident(database, OPERATOR, 4242)
    incident = open_incident(database, OPERATOR, alert_id, title="canary drift at north")
    with pytest.raises(Conflict):
        open_incident(database, OPERATOR, alert_id)
    timeline = show_incident(database, ALICE, incident.id)["timeline"]
    actions = [event["action"] for event in timeline]
    assert actions.index("deployment.deploy") < actions.index("alert.opened") < actions.index("deployment.rollback")
    assert actions[-1] == "incident.opened"
    with pytest.raises(InvalidInput):
        close_incident(database, OPERATOR, incident.id, findings=" ")
    closed = close_incident(database, OPERATOR, incident.id, findings="a unit change at north moved the scores")
    assert (closed.state, closed.closed_by, closed.alerts) == ("closed", "otto", [alert_id])
    with pytest.raises(Conflict):
        close_incident(database, OPERATOR, incident.id, findings="again")
    with database.session() as session:
        on_model = [e.action for e in list_events(session, object_type="model", object_id=MODEL)]
    assert on_model[:2] == ["incident.closed", "incident.opened"]
    assert [i.id for i in list_incidents(database, ALICE, model=MODEL, state="closed")] == [incident.id]


def test_concurrent_evaluations_open_one_alert(database):
    import threading

    build_model(database, canary=False)
    set_rules(database, OPERATOR, MODEL, RULES)
    seed(database, *(result("prediction_drift.score_psi", 1, site, 2, 0.5) for site in ("north", "south")))
    barrier = threading.Barrier(4)
    outcomes: list[dict] = []

    def evaluate() -> None:
        barrier.wait()
        outcomes.append(_evaluate(database))

    threads = [threading.Thread(target=evaluate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 4
    assert sorted(i for o in outcomes for i in o["opened"]) == sorted(a.id for a in list_alerts(database, OPERATOR))
    assert {(a.site, a.count) for a in list_alerts(database, OPERATOR)} == {("north", 1), ("south", 1)}
