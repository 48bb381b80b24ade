"""Approvals: a reasoned decision by an approver who did not submit the version, bound to its report.

An approval records the hash of the validation report it approved. Only approvals whose hash
equals the version's current report hash count, so a report that changes after approval voids
every earlier approval (and ``update_version_report`` sends an approved version back to
``validated``). A model's policy may require two distinct approvers; each decision counts only when made with the
approver's own credential (``auth.require_own_credential``).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize, record_denial, require_own_credential
from vitalops.core.clock import utcnow
from vitalops.db import Database
from vitalops.db.tables.governance import ApprovalRow
from vitalops.db.tables.registry import ModelRow, ModelVersionRow
from vitalops.errors import Conflict, InvalidInput, PolicyViolation
from vitalops.registry.lifecycle import VersionState
from vitalops.registry.schemas import ModelVersion
from vitalops.registry.versions import get_version, update_version_state, version_row


class Approval(BaseModel):
    approver: str
    decision: str
    reason: str
    report_hash: str
    at: datetime
    valid: bool


class ApprovalOutcome(BaseModel):
    version: ModelVersion
    approvals_counted: int
    approvals_required: int


def list_approvals(session: Session, name: str, number: int) -> list[Approval]:
    """Every decision on the version; ``valid`` is False for ones bound to an earlier report."""
    row = version_row(session, name, number)
    rows = session.scalars(select(ApprovalRow).where(ApprovalRow.version_id == row.id).order_by(ApprovalRow.id))
    return [
        Approval(
            approver=a.approver,
            decision=a.decision,
            reason=a.reason,
            report_hash=a.report_hash,
            at=a.at,
            valid=a.report_hash == row.report_hash,
        )
        for a in rows
    ]


def _check_decider(database: Database, actor: Principal, name: str, number: int, reason: str, action: str) -> None:
    authorize(database, actor, Permission.MODELS_APPROVE, object_type="model_version", object_id=f"{name}/{number}")
    require_own_credential(database, actor, f"a version {action.rsplit('.', 1)[-1]}", object_type="model_version",
                           object_id=f"{name}/{number}")
    if not reason.strip():
        raise InvalidInput("a reason is required to approve or reject a version")
    with database.session() as session:
        submitter = version_row(session, name, number).submitter
    if submitter == actor.name:
        record_denial(
            database,
            actor,
            f"{action}.denied",
            object_type="model_version",
            object_id=f"{name}/{number}",
            payload={"rule": "no_self_approval"},
        )
        raise PolicyViolation(
            f"'{actor.name}' submitted {name} v{number} and may not decide on it", details={"rule": "no_self_approval"}
        )


def approve_version(database: Database, actor: Principal, name: str, number: int, *, reason: str) -> ApprovalOutcome:
    """Record an approval; the version becomes ``approved`` once the model's policy is met.

    Raises PermissionDenied without ``models:approve``, PolicyViolation for the submitter (audited),
    Conflict unless the version is ``validated`` or when this approver already approved this report.
    """
    _check_decider(database, actor, name, number, reason, "model.version.approve")
    with database.session() as session:
        row = version_row(session, name, number, for_update=True)
        if row.state != VersionState.VALIDATED:
            raise Conflict(f"{name} v{number} is {row.state}; only a validated version can be approved")
        earlier = [a for a in list_approvals(session, name, number) if a.valid and a.decision == "approve"]
        if any(a.approver == actor.name for a in earlier):
            raise Conflict(f"'{actor.name}' already approved {name} v{number}; a second approver must be someone else")
        _record_decision(session, actor, row, name, number, "approve", reason)
        required = session.get_one(ModelRow, row.model_id).approvals_required
        counted = len({a.approver for a in earlier} | {actor.name})
        if counted >= required:
            version = update_version_state(
                session,
                actor,
                name,
                number,
                VersionState.APPROVED,
                reason=f"approved by {counted} of {required} required approvers",
            )
        else:
            session.flush()
            version = get_version(session, name, number)
    return ApprovalOutcome(version=version, approvals_counted=counted, approvals_required=required)


def reject_version(database: Database, actor: Principal, name: str, number: int, *, reason: str) -> ModelVersion:
    """Reject a validated version (final). Same permission and policy rules as ``approve_version``."""
    _check_decider(database, actor, name, number, reason, "model.version.reject")
    with database.session() as session:
        row = version_row(session, name, number, for_update=True)
        _record_decision(session, actor, row, name, number, "reject", reason)
        return update_version_state(session, actor, name, number, VersionState.REJECTED, reason=reason)


def _record_decision(
    session: Session, actor: Principal, row: ModelVersionRow, name: str, number: int, decision: str, reason: str
) -> None:
    """Store one approver's decision, bound to the report's hash, and audit it in the same transaction."""
    session.add(
        ApprovalRow(version_id=row.id, approver=actor.name, decision=decision, reason=reason,
                    report_hash=row.report_hash, at=utcnow())
    )
    append(session, actor=actor, action=f"model.version.{decision}", object_type="model_version",
           object_id=f"{name}/{number}", payload={"reason": reason, "report_hash": row.report_hash})
