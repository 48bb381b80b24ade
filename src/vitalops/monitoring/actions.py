"""What an alert does when it opens, by its rule's action, in the alert's own transaction.

- ``rollback``: a version deployed as a challenger that serves care (canary or A/B) at the alert's
  site is rolled back by the monitoring principal, when the change a rollback at that site would
  undo is that challenger's deployment. A champion is never rolled back automatically: its alert
  becomes critical for people to decide. A shadow serves no care and is left alone. When a later
  change at the site would be undone instead, nothing is rolled back and the alert becomes critical.
- ``review``: opens a governance task (an incident of kind ``review``) for the model, audited.
- ``retrain``: records a retraining request (``monitoring.retraining_requests``): outcome
  ``retrain_requested``, or ``retrain_pending`` when one of the model's requests is pending or
  running already, or ``retrain_refused`` (with a governance review incident) when the plan in force
  does not allow ``retrain`` or the version cannot be re-run. The training, the candidate's PCCP
  check and its shadow deployment run later (``monitoring.retraining``), never in this transaction.

Each outcome is audited on the alert with the evidence (rule, metric, value, comparison,
threshold, window). Nothing here promotes a version: deployments only ever move back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Principal, Role
from vitalops.db.tables.alerts import AlertRow
from vitalops.monitoring.incidents import open_incident_for
from vitalops.monitoring.retraining_requests import request_retraining
from vitalops.registry.deployments import apply_rollback, list_deployments, undoable_change

#: The platform's monitoring acting on its own: an operator, so it may roll back and nothing more.
MONITORING = Principal(name="system:monitoring", roles=frozenset({Role.OPERATOR}), kind="system",
                       credential="system")
#: Deployment modes whose challenger serves care, and so is rolled back when its rule says so.
ROLLED_BACK_MODES = ("canary", "ab")


def evidence(alert: AlertRow) -> dict[str, Any]:
    """What the alert saw, for the audit trail (no patient data)."""
    return {"alert": alert.id, "rule": alert.rule_id, "rule_set": alert.rule_set, "metric": alert.metric_id,
            "version": alert.version, "site": alert.site, "value": alert.value, "n": alert.n,
            "comparison": alert.comparison, "threshold": alert.threshold, "window": alert.window,
            "window_start": alert.window_start, "window_end": alert.window_end}


def take_action(session: Session, alert: AlertRow) -> str:
    """Carry out ``alert.action`` and return its outcome (also set on the alert and audited)."""
    if alert.action == "none":
        return "none"
    details: dict[str, Any] = {}
    if alert.action == "rollback":
        outcome = _rollback(session, alert, details)
    elif alert.action == "review":
        incident = open_incident_for(session, MONITORING, alert, kind="review",
                                     title=f"review {alert.model}: rule {alert.rule_id} breached by "
                                           f"{alert.metric_id} of v{alert.version} at {alert.site}")
        append(session, actor=MONITORING, action="governance.review_requested", object_type="model",
               object_id=alert.model, payload={**evidence(alert), "incident": incident})
        outcome, details["incident"] = "review_opened", incident
    else:
        outcome, details["retraining_request"] = request_retraining(session, MONITORING, alert, evidence(alert))
    alert.action_outcome = outcome
    append(session, actor=MONITORING, action="alert.action", object_type="alert", object_id=str(alert.id),
           payload={**evidence(alert), "action": alert.action, "outcome": outcome, **details})
    return outcome


def _rollback(session: Session, alert: AlertRow, details: dict[str, Any]) -> str:
    if alert.version == 0:
        return "not_applicable"  # a site's data-quality metric names no version
    slots = {state.slot: state for state in list_deployments(session, alert.model, site=alert.site)}
    champion, challenger = slots.get("champion"), slots.get("challenger")
    if challenger is not None and challenger.version == alert.version:
        if challenger.mode not in ROLLED_BACK_MODES:
            return "shadow_left"
        change = undoable_change(session, alert.model, alert.site)
        if change is None or change.slot != "challenger" or change.version != alert.version:
            alert.severity = "critical"  # a rollback now would undo a later change: people decide
            return "rollback_blocked"
        event = apply_rollback(session, actor=MONITORING, name=alert.model, site=alert.site,
                               reason=f"automatic rollback: alert {alert.id}, rule {alert.rule_id}: {alert.metric_id} "
                                      f"{alert.value:.4g} {alert.comparison} {alert.threshold:g} over "
                                      f"{alert.window} from {alert.window_start.isoformat()}")
        details["deployment_event"] = event.id
        details["restored_version"] = event.version
        return "rolled_back"
    if champion is not None and champion.version == alert.version:
        alert.severity = "critical"  # a champion is never rolled back by itself
        return "champion_kept"
    return "not_deployed"
