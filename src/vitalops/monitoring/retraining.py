"""Running retraining requests: train on fresh data, register the candidate, gate it, deploy it as a shadow.

``run_retraining`` takes each pending request (and each ``running`` one whose lease expired: its
worker died) and carries it out as the ``system:retraining`` principal, a data scientist: it may
train, register, run a PCCP check and deploy to shadow, and nothing more, so nothing here can
promote a version or approve one.

1. The plan in force is read again: one that no longer allows ``retrain`` refuses the request.
2. The base version's recorded training spec is re-run on fresh data (``training.retrain``); the
   candidate is registered and the request names it in one transaction, so a crash leaves either no
   candidate (the rerun trains again) or a registered one the rerun goes on from, never a version
   the request does not know.
3. The candidate's PCCP check (every site's champion, the plan's frozen test set) is run and the
   request records its id and outcome.
4. Passed (and the candidate met its validation minimums): the candidate is deployed as the shadow
   challenger at the alert's site for the plan's ``retraining.shadow_days`` (the deployment and the
   request record when the period ends; after it nothing happens by itself: promotion is people's,
   through the gate). When another version holds that challenger slot, it is not replaced: the request
   is ``passed`` and a review incident says so. Failed or incomplete: a governance review incident
   names the failed criteria and a critical alert (no patient data) is raised and notified.

A request whose step raises is ``failed`` with the error's safe message (never an exception's text
from outside the platform); a finished request is never run again, so a rerun changes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from vitalops.artifacts import open_store
from vitalops.audit import append
from vitalops.auth import Permission, Principal, Role, authorize
from vitalops.core.clock import as_utc, utcnow
from vitalops.core.settings import Settings, get_settings
from vitalops.db import Database
from vitalops.db.tables.alerts import AlertRow
from vitalops.db.tables.retraining import RetrainingRequestRow
from vitalops.errors import Conflict, VitalOpsError
from vitalops.governance.deploy import plan_deployment
from vitalops.governance.gate import run_pccp_check
from vitalops.governance.pccp import DEFAULT_SHADOW_DAYS
from vitalops.monitoring.alerts import Alert, notify_opened, to_alert
from vitalops.monitoring.incidents import open_incident_for, open_model_incident
from vitalops.monitoring.notifiers import Notifier
from vitalops.monitoring.retraining_requests import (
    RetrainingRequest,
    plan_allowing_retrain,
    refuse,
    registered_definitions,
    to_request,
)
from vitalops.registry.deployments import apply_deployment, list_deployments, parse_mode
from vitalops.registry.versions import get_version

#: The platform retraining on its own: a data scientist, so it may train, check and deploy to shadow only.
RETRAINING = Principal(name="system:retraining", roles=frozenset({Role.DATA_SCIENTIST}), kind="system",
                       credential="system")
#: How long a claimed request is held without its worker finishing a step: after it, a rerun resumes it.
LEASE = timedelta(hours=2)
#: Claims of one request before it is given up as failed (a step that kills its worker every time).
MAX_ATTEMPTS = 3
#: The alert a failed candidate raises: its own rule and metric ids, so that it is never keyed with a rule's.
GATE_RULE, GATE_METRIC = "retraining-gate", "retraining.pccp_check"
log = logging.getLogger("vitalops.monitoring.retraining")


def _holder() -> str:
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _claimable(session: Session, model: str | None, now: datetime) -> list[int]:
    query = select(RetrainingRequestRow.id).where(or_(
        RetrainingRequestRow.state == "pending",
        (RetrainingRequestRow.state == "running") & (RetrainingRequestRow.lease_expires_at < now)))
    if model is not None:
        query = query.where(RetrainingRequestRow.model == model)
    return list(session.scalars(query.order_by(RetrainingRequestRow.id)))


def _claim(database: Database, request_id: int, holder: str, now: datetime) -> bool:
    """Take the request for ``holder``: True for exactly one of the workers that try."""
    with database.session() as session:
        claimed = session.execute(update(RetrainingRequestRow).where(
            RetrainingRequestRow.id == request_id, or_(
                RetrainingRequestRow.state == "pending",
                (RetrainingRequestRow.state == "running") & (RetrainingRequestRow.lease_expires_at < now)),
        ).values(state="running", holder=holder, lease_expires_at=now + LEASE,
                 attempts=RetrainingRequestRow.attempts + 1))
        if not claimed.rowcount:  # type: ignore[attr-defined]
            return False
        row = session.get_one(RetrainingRequestRow, request_id)
        row.started_at = row.started_at or now
        append(session, actor=RETRAINING, action="retraining.started", object_type="model", object_id=row.model,
               payload={"request": row.id, "attempt": row.attempts, "resumed_from": _step(row)})
        return True


def _step(row: RetrainingRequestRow) -> str:
    return "checked" if row.check_id else "registered" if row.candidate_version else "start"


def _held(session: Session, request_id: int, holder: str) -> RetrainingRequestRow:
    """The request, locked, while ``holder`` still holds it; Conflict once another worker took it over."""
    row = session.get(RetrainingRequestRow, request_id, with_for_update=True)
    if row is None or row.state != "running" or row.holder != holder:
        raise Conflict(f"retraining request {request_id} is no longer held by this worker")
    return row


def _finish(row: RetrainingRequestRow, state: str, now: datetime) -> None:
    row.state, row.finished_at, row.holder, row.lease_expires_at = state, now, None, None


def _register_candidate(database: Database, settings: Settings, request_id: int, holder: str) -> None:
    from vitalops.training.retrain import fresh_training_data, recorded_training_spec
    from vitalops.training.trainer import fit_candidate, register_candidate

    with database.read_session() as session:
        row = session.get_one(RetrainingRequestRow, request_id)
        model, base, site = row.model, row.base_version, row.site
        assert base is not None  # a request without a version is refused when recorded
        version = get_version(session, model, base)
        definitions = registered_definitions(session, version)
        plan, _ = plan_allowing_retrain(session, model)
    spec = recorded_training_spec(version)
    assert spec is not None and definitions is not None and plan is not None  # refused otherwise
    authorize(database, RETRAINING, Permission.MODELS_TRAIN, object_type="model", object_id=model)
    store = open_store(settings.artifacts_root)
    fresh = fresh_training_data(version, spec, definitions, settings.lake_root, store=store,
                                frozen_test_set_uri=plan.frozen_test_set.uri)
    candidate = fit_candidate(fresh.spec, fresh.dataset, lineage={"retrained_from": {
        "version": base, "request": request_id, "site": site, "facts_version": fresh.facts_version,
        "frozen_rows_left_out": fresh.frozen_rows_left_out, "split": fresh.split}},
        reason=f"retrained from v{base} on fresh data (retraining request {request_id})")
    with database.session() as session:
        row = _held(session, request_id, holder)
        registered = register_candidate(session, RETRAINING, fresh.spec, candidate, fresh.dataset)
        row.candidate_version, row.facts_version = registered.number, fresh.facts_version
        row.failed_criteria = orjson.dumps([f"validation minimum: {f}" for f in candidate.failures]).decode()
        append(session, actor=RETRAINING, action="retraining.candidate_registered", object_type="model",
               object_id=model, payload={"request": request_id, "base_version": base, "candidate": registered.number,
                                         "state": registered.state, "facts_version": fresh.facts_version,
                                         "missed_minimums": candidate.failures})


def _check_candidate(database: Database, request_id: int, holder: str) -> None:
    with database.read_session() as session:
        row = session.get_one(RetrainingRequestRow, request_id)
        model, candidate = row.model, row.candidate_version
    assert candidate is not None
    check = run_pccp_check(database, RETRAINING, model, candidate)
    with database.session() as session:
        row = _held(session, request_id, holder)
        named = [c.name for c in check.failed] + [f"{c.name} (not evaluable)" for c in check.not_evaluable]
        row.check_id, row.check_status = check.id, check.status
        row.failed_criteria = orjson.dumps(orjson.loads(row.failed_criteria or "[]") + named).decode()
        append(session, actor=RETRAINING, action="retraining.checked", object_type="model", object_id=model,
               payload={"request": request_id, "candidate": candidate, "check_id": check.id,
                        "status": check.status, "failed": named})


def _deploy_shadow(database: Database, request_id: int, holder: str, now: datetime) -> None:
    with database.read_session() as session:
        row = session.get_one(RetrainingRequestRow, request_id)
        model, candidate, site = row.model, row.candidate_version, row.site
        plan, _ = plan_allowing_retrain(session, model)
    assert candidate is not None
    days = plan.retraining.shadow_days if plan is not None else DEFAULT_SHADOW_DAYS
    plan_deployment(database, RETRAINING, model, candidate, sites=[site], mode="shadow")
    with database.session() as session:
        row = _held(session, request_id, holder)
        challenger = next((s for s in list_deployments(session, model, site=site) if s.slot == "challenger"), None)
        if challenger is not None and challenger.version not in (None, candidate):
            title = (f"retrained {model} v{candidate} passed its PCCP check (check {row.check_id}) but was not "
                     f"deployed: the challenger slot at {site} holds v{challenger.version}")
            row.incident_id = open_model_incident(session, RETRAINING, model, kind="review", title=title, payload={
                "retraining_request": request_id, "candidate": candidate, "site": site})
            _finish(row, "passed", now)
            append(session, actor=RETRAINING, action="retraining.passed", object_type="model", object_id=model,
                   payload={"request": request_id, "candidate": candidate, "site": site, "deployed": False,
                            "challenger": challenger.version, "incident": row.incident_id})
            return
        until = now + timedelta(days=days)
        if challenger is None or challenger.version != candidate:
            apply_deployment(session, actor=RETRAINING, name=model, number=candidate, site=site,
                             mode=parse_mode("shadow"), ends_at=until,
                             reason=f"retrained candidate from request {request_id}: passed PCCP check "
                                    f"{row.check_id}; shadow challenger for {days} days, until {until.date()}; "
                                    "promotion is an approver's decision")
        row.shadow_until = until
        _finish(row, "shadow", now)
        append(session, actor=RETRAINING, action="retraining.shadow_deployed", object_type="model", object_id=model,
               payload={"request": request_id, "candidate": candidate, "site": site, "check_id": row.check_id,
                        "shadow_days": days, "shadow_until": until})


def _raise_to_governance(database: Database, request_id: int, holder: str, now: datetime) -> Alert:
    with database.session() as session:
        row = _held(session, request_id, holder)
        asked = session.get(AlertRow, row.alert_id) if row.alert_id is not None else None
        failed = orjson.loads(row.failed_criteria or "[]")
        status = row.check_status if row.check_status != "passed" else "passed, but validation minimums missed"
        alert = AlertRow(
            model=row.model, version=row.candidate_version or 0, site=row.site, rule_id=GATE_RULE,
            rule_set=asked.rule_set if asked else 0, metric_id=GATE_METRIC, comparison=">", threshold=0.0,
            window=asked.window if asked else "1d", severity="critical", action="none",
            action_outcome="review_opened", state="open", value=float(len(failed)), n=len(failed),
            window_start=asked.window_start if asked else now, window_end=asked.window_end if asked else now,
            count=1, opened_at=now, last_seen_at=now)
        session.add(alert)
        session.flush()
        append(session, actor=RETRAINING, action="alert.opened", object_type="alert", object_id=str(alert.id),
               payload={"model": row.model, "version": alert.version, "site": row.site, "rule": GATE_RULE,
                        "metric": GATE_METRIC, "value": alert.value, "severity": "critical",
                        "retraining_request": request_id, "check_id": row.check_id, "failed": failed})
        title = (f"retrained {row.model} v{row.candidate_version} did not pass its PCCP check "
                 f"(check {row.check_id}, {status}): " + ", ".join(failed))
        row.incident_id = open_incident_for(session, RETRAINING, alert, kind="review", title=title[:2000])
        row.outcome_alert_id = alert.id
        _finish(row, "gate_failed", now)
        append(session, actor=RETRAINING, action="retraining.gate_failed", object_type="model", object_id=row.model,
               payload={"request": request_id, "candidate": row.candidate_version, "check_id": row.check_id,
                        "status": row.check_status, "failed": failed, "incident": row.incident_id,
                        "alert": alert.id})
        return to_alert(alert)


def _fail(database: Database, request_id: int, holder: str, reason: str) -> None:
    with database.session() as session:
        row = session.get(RetrainingRequestRow, request_id, with_for_update=True)
        if row is None or row.state != "running" or row.holder != holder:
            return
        row.reason = reason
        _finish(row, "failed", utcnow())
        append(session, actor=RETRAINING, action="retraining.failed", object_type="model", object_id=row.model,
               payload={"request": request_id, "reason": reason, "candidate": row.candidate_version})


def _carry_out(database: Database, settings: Settings, request_id: int, holder: str, now: datetime,
               notifiers: list[Notifier] | None) -> None:
    with database.session() as session:
        row = _held(session, request_id, holder)
        if row.attempts > MAX_ATTEMPTS:
            row.reason = f"given up after {MAX_ATTEMPTS} attempts that did not finish"
            _finish(row, "failed", now)
            append(session, actor=RETRAINING, action="retraining.failed", object_type="model", object_id=row.model,
                   payload={"request": request_id, "reason": row.reason, "candidate": row.candidate_version})
            return
        _, refusal = plan_allowing_retrain(session, row.model)
        if refusal is not None:
            refuse(session, RETRAINING, row, refusal)
            return
    with database.read_session() as session:
        row = session.get_one(RetrainingRequestRow, request_id)
        registered, checked = row.candidate_version is not None, row.check_id is not None
    if not registered:
        _register_candidate(database, settings, request_id, holder)
    if not checked:
        _check_candidate(database, request_id, holder)
    with database.read_session() as session:
        row = session.get_one(RetrainingRequestRow, request_id)
        assert row.candidate_version is not None
        validated = get_version(session, row.model, row.candidate_version).state == "validated"
        passed = row.check_status == "passed" and validated
    if passed:
        _deploy_shadow(database, request_id, holder, now)
        return
    alert = _raise_to_governance(database, request_id, holder, now)
    notify_opened(database, [alert], notifiers=notifiers, settings=settings)


def run_retraining(database: Database, actor: Principal, *, model: str | None = None, settings: Settings | None = None,
                   now: datetime | None = None, notifiers: list[Notifier] | None = None) -> list[RetrainingRequest]:
    """Carry out every pending retraining request (of ``model`` when given), and resume each whose
    worker died; needs ``monitoring:run``. Returns the requests it ran, as they ended."""
    authorize(database, actor, Permission.MONITORING_RUN, object_type="retraining", object_id=model or "all")
    settings = settings or get_settings()
    now = as_utc(now or utcnow())
    holder = _holder()
    with database.read_session() as session:
        ids = _claimable(session, model, now)
    ran: list[int] = []
    for request_id in ids:
        if not _claim(database, request_id, holder, now):
            continue
        ran.append(request_id)
        try:
            _carry_out(database, settings, request_id, holder, now, notifiers)
        except Exception as exc:  # noqa: BLE001 - one request's failure is recorded; the others go on
            reason = exc.message if isinstance(exc, VitalOpsError) else f"{type(exc).__name__} while retraining"
            log.error("retraining request failed", extra={"request": request_id, "error_type": type(exc).__name__})
            _fail(database, request_id, holder, reason[:2000])
    with database.read_session() as session:
        return [to_request(session.get_one(RetrainingRequestRow, i)) for i in ran]


def summary(requests: list[RetrainingRequest]) -> dict[str, Any]:
    """What the command line and the API print of a run."""
    return {"ran": len(requests), "requests": [r.model_dump(mode="json") for r in requests]}
