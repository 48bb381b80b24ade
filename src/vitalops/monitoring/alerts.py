"""Alerts: a model's rules judged against its newest metric results, and each alert's lifecycle.

``evaluate_alerts`` reads, for each rule in force, the newest result of each (metric id, version,
site) whose window has the rule's length (results whose window started more than two windows and a
day before now are stale and not judged). A result with fewer than ``min_n`` rows, or without a
value, is ``insufficient_data``: never a number and never an alert. A breach opens an alert, takes
the rule's action (``monitoring.actions``) and notifies (``monitoring.notifiers``) after commit; a
breach of a key that already has an unresolved alert (same rule, metric id, version and site)
updates that alert (latest value and window, last seen, count) instead. Judging the same window
again changes nothing.

The lifecycle is one table: ``open -> acknowledged -> resolved`` or ``open -> resolved``, each move
by ``alerts:manage`` with a reason, audited in its transaction; any other move is a Conflict.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import as_utc, utcnow
from vitalops.core.settings import Settings, get_settings
from vitalops.db import Database
from vitalops.db.tables.alerts import AlertDeliveryRow, AlertRow
from vitalops.errors import Conflict, InvalidInput, NotFound
from vitalops.monitoring.actions import MONITORING, take_action
from vitalops.monitoring.alert_rules import AlertRule, rules_in_force
from vitalops.monitoring.notifiers import Delivery, Notifier, deliver, notifiers_from_settings
from vitalops.monitoring.results import MetricResult, read_results

STATES = ("open", "acknowledged", "resolved")
TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"acknowledged", "resolved"}),
    "acknowledged": frozenset({"resolved"}),
    "resolved": frozenset(),
}
UNRESOLVED = ("open", "acknowledged")
LIST_LIMIT = 500
MAX_REASON = 2000


class Alert(BaseModel):
    """An alert as every caller sees it (no ORM object leaves this module)."""

    id: int
    model: str
    version: int
    site: str
    rule: str
    rule_set: int
    metric: str
    comparison: str
    threshold: float
    window: str
    severity: str
    action: str
    action_outcome: str | None
    state: str
    value: float
    n: int
    window_start: datetime
    window_end: datetime
    count: int
    opened_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    incident: int | None


def _to_alert(row: AlertRow) -> Alert:
    return Alert(id=row.id, model=row.model, version=row.version, site=row.site, rule=row.rule_id,
                 rule_set=row.rule_set, metric=row.metric_id, comparison=row.comparison, threshold=row.threshold,
                 window=row.window, severity=row.severity, action=row.action, action_outcome=row.action_outcome,
                 state=row.state, value=row.value, n=row.n, window_start=row.window_start,
                 window_end=row.window_end, count=row.count, opened_at=row.opened_at,
                 last_seen_at=row.last_seen_at, acknowledged_at=row.acknowledged_at,
                 acknowledged_by=row.acknowledged_by, resolved_at=row.resolved_at, resolved_by=row.resolved_by,
                 incident=row.incident_id)


def message(alert: Alert, event: str) -> dict[str, Any]:
    """What a notifier sends: the alert's facts, never a patient's."""
    return {"event": event, "alert_id": alert.id, "model": alert.model, "version": alert.version,
            "site": alert.site, "rule": alert.rule, "metric": alert.metric, "value": alert.value, "n": alert.n,
            "comparison": alert.comparison, "threshold": alert.threshold, "window": alert.window,
            "window_start": alert.window_start.isoformat(), "window_end": alert.window_end.isoformat(),
            "severity": alert.severity, "action": alert.action, "action_outcome": alert.action_outcome,
            "state": alert.state, "count": alert.count}


def _newest(session: Session, model: str, rule: AlertRule, now: datetime) -> list[MetricResult]:
    length = rule.window_length
    results = read_results(session, model=model, metric_id=rule.metric, since=now - 2 * length - timedelta(days=1),
                           until=now)
    newest: dict[tuple[str, int, str], MetricResult] = {}
    for result in results:  # oldest window first: the last one kept is the newest
        if (as_utc(result.window_end) - as_utc(result.window_start) == length and as_utc(result.window_end) <= now
                and rule.matches(result.metric_id) and rule.applies_to(result.site)):
            newest[(result.metric_id, result.version, result.site)] = result
    return [newest[key] for key in sorted(newest)]


def _judge(rule: AlertRule, result: MetricResult) -> str:
    if result.value is None or result.n < rule.min_n or result.status == "insufficient_data":
        return "insufficient_data"
    if rule.flagged_only and result.status != "flagged":
        return "ok"
    return "breach" if rule.breached(result.value) else "ok"


def _unresolved(session: Session, model: str, rule: AlertRule, result: MetricResult) -> AlertRow | None:
    if session.get_bind().dialect.name == "postgresql":
        # Two evaluations of the same key (two API workers) must not both open an alert: they
        # serialize on the key for the rest of the transaction (SQLite's BEGIN IMMEDIATE already does).
        key = f"{model}\x1f{rule.id}\x1f{result.metric_id}\x1f{result.version}\x1f{result.site}"
        lock = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})
    return session.scalars(select(AlertRow).where(
        AlertRow.model == model, AlertRow.rule_id == rule.id, AlertRow.metric_id == result.metric_id,
        AlertRow.version == result.version, AlertRow.site == result.site, AlertRow.state.in_(UNRESOLVED),
    ).order_by(AlertRow.id.desc()).limit(1).with_for_update()).first()


def _record_breach(session: Session, model: str, rule_set: int, rule: AlertRule,
                   result: MetricResult) -> tuple[str, AlertRow]:
    """Open an alert or update the unresolved one; returns ('opened'|'repeated'|'unchanged', row)."""
    assert result.value is not None
    existing = _unresolved(session, model, rule, result)
    if existing is not None:
        if as_utc(result.window_start) <= existing.window_start:
            return "unchanged", existing
        existing.value, existing.n, existing.last_seen_at = result.value, result.n, utcnow()
        existing.window_start, existing.window_end = as_utc(result.window_start), as_utc(result.window_end)
        existing.count += 1
        append(session, actor=MONITORING, action="alert.repeated", object_type="alert", object_id=str(existing.id),
               payload={"value": result.value, "n": result.n, "window_start": existing.window_start,
                        "count": existing.count})
        return "repeated", existing
    row = AlertRow(model=model, version=result.version, site=result.site, rule_id=rule.id, rule_set=rule_set,
                   metric_id=result.metric_id, comparison=rule.comparison, threshold=rule.threshold,
                   window=rule.window, severity=rule.severity, action=rule.action, state="open", value=result.value,
                   n=result.n, window_start=as_utc(result.window_start), window_end=as_utc(result.window_end),
                   count=1, opened_at=utcnow(), last_seen_at=utcnow())
    session.add(row)
    session.flush()
    append(session, actor=MONITORING, action="alert.opened", object_type="alert", object_id=str(row.id),
           payload={"model": model, "version": row.version, "site": row.site, "rule": rule.id,
                    "rule_set": rule_set, "metric": row.metric_id, "value": row.value, "n": row.n,
                    "comparison": row.comparison, "threshold": row.threshold, "window": row.window,
                    "window_start": row.window_start, "severity": row.severity, "action": row.action})
    take_action(session, row)
    return "opened", row


def evaluate_alerts(database: Database, actor: Principal, model: str, *, now: datetime | None = None,
                    notifiers: list[Notifier] | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Judge ``model``'s rules in force against its newest results as of ``now`` (default: the
    clock; it bounds which windows are complete and which are stale; see the module docstring).

    Needs ``monitoring:run``. NotFound for an unknown model. Returns each judgement, the alerts
    opened and repeated, and each notification's delivery. Notifiers default to the configured ones.
    """
    authorize(database, actor, Permission.MONITORING_RUN, object_type="model", object_id=model)
    now = as_utc(now or utcnow())
    summary: dict[str, Any] = {"model": model, "rule_set": None, "judged": [], "opened": [], "repeated": [],
                               "deliveries": []}
    with database.read_session() as session:
        rule_set = rules_in_force(session, model)
        if rule_set is None:
            return summary
        work = [(rule, result) for rule in rule_set.rules for result in _newest(session, model, rule, now)]
    summary["rule_set"] = rule_set.number
    opened: list[Alert] = []
    for rule, result in work:
        state = _judge(rule, result)
        summary["judged"].append({"rule": rule.id, "metric": result.metric_id, "version": result.version,
                                  "site": result.site, "window_start": result.window_start, "n": result.n,
                                  "min_n": rule.min_n, "state": state,
                                  "value": None if state == "insufficient_data" else result.value})
        if state != "breach":
            continue
        with database.session() as session:
            outcome, row = _record_breach(session, model, rule_set.number, rule, result)
            alert = _to_alert(row)
        if outcome == "opened":
            opened.append(alert)
            summary["opened"].append(alert.id)
        elif outcome == "repeated":
            summary["repeated"].append(alert.id)
    if opened:
        summary["deliveries"] = notify_opened(database, opened, notifiers=notifiers, settings=settings)
    return summary


def notify_opened(database: Database, opened: list[Alert], *, notifiers: list[Notifier] | None = None,
                  settings: Settings | None = None) -> list[dict[str, Any]]:
    """Notify each newly opened alert through ``notifiers`` (default: the configured ones), after its
    transaction committed; each outcome is recorded and audited. Returns the deliveries."""
    settings = settings or get_settings()
    chosen = notifiers if notifiers is not None else notifiers_from_settings(settings)
    deliveries: list[dict[str, Any]] = []
    for alert in opened:
        outcomes = deliver(chosen, message(alert, "alert.opened"), attempts=settings.alert_notify_attempts,
                           backoff_seconds=settings.alert_notify_backoff_seconds)
        _record_deliveries(database, alert.id, "alert.opened", outcomes)
        deliveries += [{"alert": alert.id, **d.__dict__} for d in outcomes]
    return deliveries


def to_alert(row: AlertRow) -> Alert:
    """The caller's view of an alert row (for modules that open alerts of their own)."""
    return _to_alert(row)


def evaluate_after_run(database: Database, actor: Principal, run_summary: dict[str, Any], *,
                       now: datetime | None = None, settings: Settings | None = None) -> list[dict[str, Any]]:
    """``evaluate_alerts`` for each model a monitoring run computed (``run_monitoring``'s summary),
    judged as of the end of the range it computed (so a backfill judges its newest windows)."""
    evaluations = []
    for computed in run_summary["models"]:
        computed_until = computed.get("until")
        as_of = now or (datetime.fromisoformat(computed_until) if computed_until else None)
        evaluations.append(evaluate_alerts(database, actor, computed["model"], now=as_of, settings=settings))
    return evaluations


def _record_deliveries(database: Database, alert_id: int, event: str, outcomes: list[Delivery]) -> None:
    with database.session() as session:
        for outcome in outcomes:
            session.add(AlertDeliveryRow(alert_id=alert_id, event=event, notifier=outcome.notifier,
                                         outcome=outcome.outcome, attempts=outcome.attempts, error=outcome.error,
                                         at=utcnow()))
            append(session, actor=MONITORING, action="alert.notified", object_type="alert", object_id=str(alert_id),
                   payload={"event": event, "notifier": outcome.notifier, "outcome": outcome.outcome,
                            "attempts": outcome.attempts, "error": outcome.error})


def list_alerts(database: Database, actor: Principal, *, model: str | None = None, state: str | None = None,
                site: str | None = None, severity: str | None = None, limit: int = 100,
                offset: int = 0) -> list[Alert]:
    """Alerts, newest first; needs ``alerts:read``. InvalidInput for an unknown state."""
    authorize(database, actor, Permission.ALERTS_READ, object_type="alert", object_id=model or "all")
    if state is not None and state not in STATES:
        raise InvalidInput(f"state '{state[:20]}' is not one of " + ", ".join(STATES), details={"field": "state"})
    query = select(AlertRow)
    for column, value in ((AlertRow.model, model), (AlertRow.state, state), (AlertRow.site, site),
                          (AlertRow.severity, severity)):
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(AlertRow.id.desc()).offset(max(0, offset)).limit(max(1, min(limit, LIST_LIMIT)))
    with database.read_session() as session:
        return [_to_alert(row) for row in session.scalars(query)]


def get_alert(database: Database, actor: Principal, alert_id: int) -> dict[str, Any]:
    """One alert with its notification outcomes; needs ``alerts:read``; NotFound for an unknown id."""
    authorize(database, actor, Permission.ALERTS_READ, object_type="alert", object_id=str(alert_id))
    with database.read_session() as session:
        row = session.get(AlertRow, alert_id)
        if row is None:
            raise NotFound(f"no alert {alert_id}", details={"field": "alert"})
        deliveries = session.scalars(select(AlertDeliveryRow).where(AlertDeliveryRow.alert_id == alert_id)
                                     .order_by(AlertDeliveryRow.id))
        return {**_to_alert(row).model_dump(mode="json"), "deliveries": [
            {"event": d.event, "notifier": d.notifier, "outcome": d.outcome, "attempts": d.attempts,
             "error": d.error, "at": d.at.isoformat()} for d in deliveries]}


def _move(database: Database, actor: Principal, alert_id: int, target: str, reason: str) -> Alert:
    authorize(database, actor, Permission.ALERTS_MANAGE, object_type="alert", object_id=str(alert_id))
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise InvalidInput(f"a reason of 1 to {MAX_REASON} characters is required", details={"field": "reason"})
    with database.session() as session:
        row = session.get(AlertRow, alert_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no alert {alert_id}", details={"field": "alert"})
        if target not in TRANSITIONS[row.state]:
            allowed = ", ".join(sorted(TRANSITIONS[row.state])) or "nothing (it is final)"
            raise Conflict(f"alert {alert_id} is {row.state}; it can move to {allowed}",
                           details={"state": row.state, "target": target})
        previous, row.state = row.state, target
        moment = utcnow()
        if target == "acknowledged":
            row.acknowledged_at, row.acknowledged_by = moment, actor.name
        else:
            row.resolved_at, row.resolved_by = moment, actor.name
        append(session, actor=actor, action=f"alert.{target}", object_type="alert", object_id=str(alert_id),
               payload={"from": previous, "to": target, "reason": reason, "model": row.model, "version": row.version,
                        "site": row.site})
        return _to_alert(row)


def acknowledge_alert(database: Database, actor: Principal, alert_id: int, *, reason: str) -> Alert:
    """Acknowledge an open alert; Conflict from any other state."""
    return _move(database, actor, alert_id, "acknowledged", reason)


def resolve_alert(database: Database, actor: Principal, alert_id: int, *, reason: str) -> Alert:
    """Resolve an open or acknowledged alert; Conflict once resolved."""
    return _move(database, actor, alert_id, "resolved", reason)


def unresolved_counts(session: Session) -> Counter[tuple[str, str, str]]:
    """Unresolved (open or acknowledged) alerts by (model, site, severity), for the Prometheus gauge."""
    rows = session.execute(select(AlertRow.model, AlertRow.site, AlertRow.severity)
                           .where(AlertRow.state.in_(UNRESOLVED)))
    return Counter((row.model, row.site, row.severity) for row in rows)
