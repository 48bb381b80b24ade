"""Retraining requests: recorded in the transaction of the alert that asks for one, listed for people.

An alert whose rule's action is ``retrain`` records a request to re-run the training spec of the
alert's version (a site-level metric names no version: the site's champion) on fresh data. While a
request of the model is ``pending`` or ``running``, a further alert is counted on it instead
(``retrain_pending``). A request is ``refused`` at once, with a governance review incident, when
the model's plan in force does not allow ``retrain`` (or there is none), or when the version cannot
be re-run from what the platform stores (``training.retrain``). The work itself runs later
(``monitoring.retraining``): training is too slow for the alert's transaction.

States: ``pending -> running -> shadow | passed | gate_failed | failed``, and ``refused`` from
``pending`` or ``running`` (a plan changed meanwhile). Each move is audited in its transaction.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import utcnow
from vitalops.db import Database
from vitalops.db.tables.alerts import AlertRow
from vitalops.db.tables.retraining import ACTIVE_STATES, RetrainingRequestRow
from vitalops.errors import InvalidInput, NotFound
from vitalops.features.definition_sets import get_definitions
from vitalops.features.definitions import DatasetSpec
from vitalops.governance.pccp import PccpSpec, current_pccp_row, parse_pccp
from vitalops.monitoring.incidents import open_incident_for, open_model_incident
from vitalops.registry.deployments import get_alias
from vitalops.registry.schemas import ModelVersion
from vitalops.registry.versions import get_version

STATES = ("pending", "running", "shadow", "passed", "gate_failed", "refused", "failed")
LIST_LIMIT = 500


class RetrainingRequest(BaseModel):
    """A request as every caller sees it (no ORM object leaves this module)."""

    id: int
    model: str
    base_version: int | None
    site: str
    alert: int | None
    state: str
    reason: str | None
    requested_at: datetime
    requested_by: str
    alerts: int
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    facts_version: int | None
    candidate_version: int | None
    check_id: int | None
    check_status: str | None
    failed_criteria: list[str]
    shadow_until: datetime | None
    incident: int | None
    outcome_alert: int | None


def to_request(row: RetrainingRequestRow) -> RetrainingRequest:
    return RetrainingRequest(
        id=row.id, model=row.model, base_version=row.base_version, site=row.site, alert=row.alert_id,
        state=row.state, reason=row.reason, requested_at=row.requested_at, requested_by=row.requested_by,
        alerts=row.alerts, attempts=row.attempts, started_at=row.started_at, finished_at=row.finished_at,
        facts_version=row.facts_version, candidate_version=row.candidate_version, check_id=row.check_id,
        check_status=row.check_status, failed_criteria=orjson.loads(row.failed_criteria or "[]"),
        shadow_until=row.shadow_until, incident=row.incident_id, outcome_alert=row.outcome_alert_id)


def plan_allowing_retrain(session: Session, model: str) -> tuple[PccpSpec | None, str | None]:
    """(the plan in force, None) when it allows ``retrain``; (plan or None, why not) otherwise."""
    try:
        row = current_pccp_row(session, model)
    except NotFound:
        return None, f"model '{model}' has no change-control plan in force, so nothing may be retrained"
    plan = parse_pccp(row.spec_yaml, source=f"{model} PCCP v{row.number}")
    if "retrain" not in plan.allowed_modifications:
        return plan, (f"the plan in force for '{model}' (v{row.number}) does not allow retraining "
                      f"(it allows {', '.join(plan.allowed_modifications) or 'nothing'})")
    return plan, None


def registered_definitions(session: Session, version: ModelVersion) -> DatasetSpec | None:
    try:
        return get_definitions(session, version.definitions_version)
    except NotFound:
        return None


def not_retrainable_because(version: ModelVersion, definitions: DatasetSpec | None) -> str | None:
    """Why ``version`` cannot be retrained from what the platform stores (None when it can)."""
    if version.source != "trained" or "training_spec" not in version.lineage:
        return (f"{version.ref} cannot be retrained: it records no training spec (versions registered from "
                "elsewhere, or trained before training specs were recorded, cannot be re-run)")
    if definitions is None:
        return (f"{version.ref} cannot be retrained: the feature definitions it was built from "
                f"({version.definitions_version[:12]}) are not registered here")
    return None


def _why_not(session: Session, model: str, base: int | None) -> str | None:
    _, refusal = plan_allowing_retrain(session, model)
    if refusal is not None:
        return refusal
    if base is None:
        return f"model '{model}' has no version at the alert's site to retrain"
    version = get_version(session, model, base)
    return not_retrainable_because(version, registered_definitions(session, version))


def _serialize_on_model(session: Session, model: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Two alerts of one model in concurrent transactions must not both record a request (SQLite's
        # BEGIN IMMEDIATE already serializes them; the unique partial index is the backstop).
        lock = int.from_bytes(hashlib.sha256(f"retraining\x1f{model}".encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})


def active_request(session: Session, model: str) -> RetrainingRequestRow | None:
    return session.scalars(select(RetrainingRequestRow).where(
        RetrainingRequestRow.model == model, RetrainingRequestRow.state.in_(ACTIVE_STATES)).with_for_update()).first()


def refuse(session: Session, actor: Principal, row: RetrainingRequestRow, reason: str,
           alert: AlertRow | None = None) -> None:
    """Mark ``row`` refused for ``reason`` and open a governance review incident (in the caller's
    transaction, audited); around ``alert`` when it belongs to no incident yet."""
    row.state, row.reason, row.finished_at = "refused", reason, utcnow()
    row.holder = row.lease_expires_at = None
    title = f"retraining of {row.model} refused: {reason}"
    if alert is not None and alert.incident_id is None:
        row.incident_id = open_incident_for(session, actor, alert, kind="review", title=title)
    else:
        row.incident_id = open_model_incident(session, actor, row.model, kind="review", title=title,
                                              payload={"retraining_request": row.id, "reason": reason})
    append(session, actor=actor, action="retraining.refused", object_type="model", object_id=row.model,
           payload={"request": row.id, "base_version": row.base_version, "site": row.site, "reason": reason,
                    "incident": row.incident_id})


def request_retraining(session: Session, actor: Principal, alert: AlertRow,
                       evidence: dict[str, Any]) -> tuple[str, int]:
    """Record (or count on the active one) a retraining request for ``alert``'s model, in the alert's
    transaction; returns the outcome (``retrain_requested``, ``retrain_pending`` or ``retrain_refused``)
    and the request's id."""
    _serialize_on_model(session, alert.model)
    active = active_request(session, alert.model)
    if active is not None:
        active.alerts += 1
        append(session, actor=actor, action="model.retrain_requested", object_type="model", object_id=alert.model,
               payload={**evidence, "request": active.id, "deduplicated": True})
        return "retrain_pending", active.id
    base = alert.version or get_alias(session, alert.model, alert.site, "champion")
    row = RetrainingRequestRow(model=alert.model, base_version=base, site=alert.site, alert_id=alert.id,
                               state="pending", requested_at=utcnow(), requested_by=actor.name, alerts=1, attempts=0)
    session.add(row)
    session.flush()
    append(session, actor=actor, action="model.retrain_requested", object_type="model", object_id=alert.model,
           payload={**evidence, "request": row.id, "base_version": base})
    refusal = _why_not(session, alert.model, base)
    if refusal is not None:
        refuse(session, actor, row, refusal, alert)
        return "retrain_refused", row.id
    return "retrain_requested", row.id


def list_retraining_requests(database: Database, actor: Principal, *, model: str | None = None,
                             state: str | None = None, limit: int = 100) -> list[RetrainingRequest]:
    """Requests, newest first; needs ``monitoring:read``. InvalidInput for an unknown state."""
    authorize(database, actor, Permission.MONITORING_READ, object_type="retraining", object_id=model or "all")
    if state is not None and state not in STATES:
        raise InvalidInput(f"state '{state[:20]}' is not one of " + ", ".join(STATES), details={"field": "state"})
    query = select(RetrainingRequestRow)
    if model is not None:
        query = query.where(RetrainingRequestRow.model == model)
    if state is not None:
        query = query.where(RetrainingRequestRow.state == state)
    query = query.order_by(RetrainingRequestRow.id.desc()).limit(max(1, min(limit, LIST_LIMIT)))
    with database.read_session() as session:
        return [to_request(row) for row in session.scalars(query)]


def get_retraining_request(database: Database, actor: Principal, request_id: int) -> RetrainingRequest:
    """One request; needs ``monitoring:read``; NotFound for an unknown id."""
    authorize(database, actor, Permission.MONITORING_READ, object_type="retraining", object_id=str(request_id))
    with database.read_session() as session:
        row = session.get(RetrainingRequestRow, request_id)
        if row is None:
            raise NotFound(f"no retraining request {request_id}", details={"field": "request"})
        return to_request(row)
