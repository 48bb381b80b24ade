"""Incidents: what happened around one or more alerts of a model, and the post-incident review.

An incident opens from an alert (``open_incident``), or as a governance task when a rule with the
``review`` action fires (kind ``review``). ``show_incident`` is its timeline: its alerts, what was
done about them (actions, acknowledgements, resolutions, deliveries) and the model's audit events
from a day before the first alert until the incident closed (deployments, rollbacks, approvals,
plans). ``close_incident`` records the review's findings. Every change is audited in its
transaction, on the incident and on the model, so it is kept with the model's record.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from vitalops.audit import append, list_events
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import utcnow
from vitalops.db import Database
from vitalops.db.tables.alerts import AlertRow, IncidentRow
from vitalops.errors import Conflict, InvalidInput, NotFound

#: How far before its first alert an incident's timeline reaches into the model's audit trail.
TIMELINE_LEAD = timedelta(days=1)
TIMELINE_EVENTS_MAX = 500
MAX_TEXT = 20_000


class Incident(BaseModel):
    id: int
    model: str
    state: str
    kind: str
    title: str
    opened_at: datetime
    opened_by: str
    closed_at: datetime | None
    closed_by: str | None
    findings: str | None
    alerts: list[int]


def _to_incident(session: Session, row: IncidentRow) -> Incident:
    alert_ids = list(session.scalars(select(AlertRow.id).where(AlertRow.incident_id == row.id).order_by(AlertRow.id)))
    return Incident(id=row.id, model=row.model, state=row.state, kind=row.kind, title=row.title,
                    opened_at=row.opened_at, opened_by=row.opened_by, closed_at=row.closed_at,
                    closed_by=row.closed_by, findings=row.findings, alerts=alert_ids)


def _text(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_TEXT:
        raise InvalidInput(f"'{field}' must be 1 to {MAX_TEXT} characters", details={"field": field})
    return value


def open_model_incident(session: Session, actor: str | Principal, model: str, *, kind: str, title: str,
                        payload: dict[str, Any]) -> int:
    """Open an incident of ``model`` in the caller's transaction, audited on the incident and on the
    model with ``payload`` (no patient data); returns its id."""
    name = actor if isinstance(actor, str) else actor.name
    row = IncidentRow(model=model, state="open", kind=kind, title=title, opened_at=utcnow(), opened_by=name)
    session.add(row)
    session.flush()
    payload = {"incident": row.id, "kind": kind, **payload}
    append(session, actor=actor, action="incident.opened", object_type="incident", object_id=str(row.id),
           payload=payload)
    append(session, actor=actor, action="incident.opened", object_type="model", object_id=model,
           payload=payload)
    return row.id


def open_incident_for(session: Session, actor: str | Principal, alert: AlertRow, *, kind: str, title: str) -> int:
    """Open an incident around ``alert`` in the caller's transaction (audited); returns its id."""
    incident = open_model_incident(session, actor, alert.model, kind=kind, title=title, payload={
        "alert": alert.id, "version": alert.version, "site": alert.site, "rule": alert.rule_id,
        "metric": alert.metric_id})
    alert.incident_id = incident
    return incident


def open_incident(database: Database, actor: Principal, alert_id: int, *, title: str | None = None) -> Incident:
    """Open an incident around an alert; needs ``alerts:manage``. NotFound for an unknown alert,
    Conflict when the alert already belongs to an incident."""
    authorize(database, actor, Permission.ALERTS_MANAGE, object_type="alert", object_id=str(alert_id))
    with database.session() as session:
        alert = session.get(AlertRow, alert_id)
        if alert is None:
            raise NotFound(f"no alert {alert_id}", details={"field": "alert"})
        if alert.incident_id is not None:
            raise Conflict(f"alert {alert_id} already belongs to incident {alert.incident_id}")
        heading = _text(title, "title") if title else (
            f"{alert.severity} alert {alert.id}: {alert.metric_id} of {alert.model} v{alert.version} at {alert.site}")
        incident_id = open_incident_for(session, actor, alert, kind="incident", title=heading)
        return _to_incident(session, session.get_one(IncidentRow, incident_id))


def list_incidents(database: Database, actor: Principal, *, model: str | None = None, state: str | None = None,
                   limit: int = 100) -> list[Incident]:
    """Incidents, newest first; needs ``alerts:read``."""
    authorize(database, actor, Permission.ALERTS_READ, object_type="incident", object_id=model or "all")
    query = select(IncidentRow)
    if model is not None:
        query = query.where(IncidentRow.model == model)
    if state is not None:
        query = query.where(IncidentRow.state == state)
    with database.read_session() as session:
        rows = session.scalars(query.order_by(IncidentRow.id.desc()).limit(max(1, min(limit, 1000))))
        return [_to_incident(session, row) for row in rows]


def show_incident(database: Database, actor: Principal, incident_id: int) -> dict[str, Any]:
    """The incident and its timeline, oldest first; needs ``alerts:read``. NotFound for an unknown id."""
    authorize(database, actor, Permission.ALERTS_READ, object_type="incident", object_id=str(incident_id))
    with database.read_session() as session:
        row = session.get(IncidentRow, incident_id)
        if row is None:
            raise NotFound(f"no incident {incident_id}", details={"field": "incident"})
        incident = _to_incident(session, row)
        alerts = list(session.scalars(select(AlertRow).where(AlertRow.incident_id == row.id)))
        start = min([a.opened_at for a in alerts] + [row.opened_at]) - TIMELINE_LEAD
        end = row.closed_at or utcnow()
        events = []
        for object_type, object_id in [("incident", str(row.id)), ("model", row.model),
                                       *(("alert", str(a.id)) for a in alerts)]:
            events += [e for e in list_events(session, since=start, object_type=object_type, object_id=object_id,
                                              limit=TIMELINE_EVENTS_MAX) if e.at <= end]
    unique = {event.seq: event for event in events}
    timeline = [{"at": e.at, "actor": e.actor, "action": e.action, "object": f"{e.object_type}:{e.object_id}",
                 "details": e.payload} for e in sorted(unique.values(), key=lambda e: e.seq)]
    return {"incident": incident.model_dump(mode="json"), "timeline": timeline[-TIMELINE_EVENTS_MAX:]}


def close_incident(database: Database, actor: Principal, incident_id: int, *, findings: str) -> Incident:
    """Close an incident with the post-incident review's findings; needs ``alerts:manage``.
    Conflict when it is already closed."""
    authorize(database, actor, Permission.ALERTS_MANAGE, object_type="incident", object_id=str(incident_id))
    findings = _text(findings, "findings")
    with database.session() as session:
        row = session.get(IncidentRow, incident_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no incident {incident_id}", details={"field": "incident"})
        if row.state != "open":
            raise Conflict(f"incident {incident_id} is {row.state}; only an open incident can be closed")
        row.state, row.closed_at, row.closed_by, row.findings = "closed", utcnow(), actor.name, findings
        payload = {"incident": row.id, "findings": findings}
        append(session, actor=actor, action="incident.closed", object_type="incident", object_id=str(row.id),
               payload=payload)
        append(session, actor=actor, action="incident.closed", object_type="model", object_id=row.model,
               payload=payload)
        return _to_incident(session, row)
