"""Models and their versions: create, get, list, and move a version through its lifecycle.

Functions taking a ``Session`` run inside the caller's transaction and write the audit event
there; permission checks happen in the callers that take a ``Database`` (see ``service``).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Principal
from vitalops.core.clock import utcnow
from vitalops.db.tables.registry import ModelRow, ModelVersionRow, VersionTransitionRow
from vitalops.errors import Conflict, InvalidInput, NotFound
from vitalops.registry.lifecycle import VersionState, check_transition
from vitalops.registry.schemas import (
    Model,
    ModelCreate,
    ModelProfile,
    ModelVersion,
    Signature,
    Transition,
    VersionCreate,
)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _to_model(row: ModelRow) -> Model:
    fields = {column: getattr(row, column) for column in Model.model_fields if column != "profile"}
    return Model(**fields, profile=ModelProfile.model_validate_json(row.profile_json or "{}"))


def _to_version(row: ModelVersionRow, model_name: str) -> ModelVersion:
    return ModelVersion(
        id=row.id,
        model=model_name,
        number=row.number,
        state=row.state,
        source=row.source,
        submitter=row.submitter,
        created_at=row.created_at,
        updated_at=row.updated_at,
        dataset_uri=row.dataset_uri,
        dataset_fingerprint=row.dataset_fingerprint,
        definitions_version=row.definitions_version,
        code_version=row.code_version,
        estimator=row.estimator,
        flavor=row.flavor,
        hyperparameters=orjson.loads(row.hyperparameters_json),
        signature=Signature.model_validate_json(row.signature_json),
        artifact_sha256=row.artifact_sha256,
        threshold=row.threshold,
        report_hash=row.report_hash,
        lineage=orjson.loads(row.lineage_json),
    )


def model_row(session: Session, name: str) -> ModelRow:
    row = session.scalars(select(ModelRow).where(ModelRow.name == name)).first()
    if row is None:
        raise NotFound(f"no model named '{name}'")
    return row


def version_row(session: Session, name: str, number: int, *, for_update: bool = False) -> ModelVersionRow:
    model = model_row(session, name)
    query = select(ModelVersionRow).where(ModelVersionRow.model_id == model.id, ModelVersionRow.number == number)
    if for_update:
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(f"model '{name}' has no version {number}")
    return row


def create_model(session: Session, actor: Principal, spec: ModelCreate) -> Model:
    """Register a model's identity. Raises Conflict when the name is taken."""
    if session.scalars(select(ModelRow.id).where(ModelRow.name == spec.name)).first() is not None:
        raise Conflict(f"a model named '{spec.name}' already exists")
    row = ModelRow(**spec.model_dump(exclude={"profile"}), profile_json=spec.profile.model_dump_json(),
                   created_at=utcnow(), created_by=actor.name)
    session.add(row)
    session.flush()
    append(
        session,
        actor=actor,
        action="model.create",
        object_type="model",
        object_id=spec.name,
        payload={"risk_class": spec.risk_class, "approvals_required": spec.approvals_required},
    )
    return _to_model(row)


def get_model(session: Session, name: str) -> Model:
    return _to_model(model_row(session, name))


def list_models(session: Session, *, offset: int = 0, limit: int = 100) -> list[Model]:
    rows = session.scalars(select(ModelRow).order_by(ModelRow.name).offset(offset).limit(limit))
    return [_to_model(row) for row in rows]


def create_version(session: Session, actor: Principal, name: str, spec: VersionCreate) -> ModelVersion:
    """Add the next numbered version of ``name`` in ``spec.state``; audited as ``model.version.create``."""
    model = model_row(session, name)
    if not spec.signature.inputs:
        raise InvalidInput("a version needs at least one input feature in its signature")
    number = (
        int(
            session.scalar(
                select(func.coalesce(func.max(ModelVersionRow.number), 0)).where(ModelVersionRow.model_id == model.id)
            )
            or 0
        )
        + 1
    )
    now = utcnow()
    row = ModelVersionRow(
        model_id=model.id,
        number=number,
        state=spec.state,
        source=spec.source,
        submitter=actor.name,
        created_at=now,
        updated_at=now,
        dataset_uri=spec.dataset_uri,
        dataset_fingerprint=spec.dataset_fingerprint,
        definitions_version=spec.definitions_version,
        code_version=spec.code_version,
        estimator=spec.estimator,
        flavor=spec.flavor,
        hyperparameters_json=_json(spec.hyperparameters),
        signature_json=spec.signature.model_dump_json(),
        artifact_sha256=spec.artifact_sha256,
        threshold=float(spec.threshold),
        report_json=_json(spec.report),
        report_hash=spec.report_hash,
        lineage_json=_json(spec.lineage),
    )
    session.add(row)
    session.flush()
    session.add(
        VersionTransitionRow(
            version_id=row.id,
            from_state=None,
            to_state=spec.state,
            actor=actor.name,
            reason=spec.reason,
            at=now,
        )
    )
    append(
        session,
        actor=actor,
        action="model.version.create",
        object_type="model_version",
        object_id=f"{name}/{number}",
        payload={
            "state": spec.state,
            "source": spec.source,
            "artifact_sha256": spec.artifact_sha256,
            "dataset_fingerprint": spec.dataset_fingerprint,
            "report_hash": spec.report_hash,
            "reason": spec.reason,
        },
    )
    return _to_version(row, name)


def get_version(session: Session, name: str, number: int) -> ModelVersion:
    return _to_version(version_row(session, name, number), name)


def get_version_by_id(session: Session, version_id: int) -> ModelVersion:
    row = session.get(ModelVersionRow, version_id)
    if row is None:
        raise NotFound(f"no model version with id {version_id}")
    return _to_version(row, session.get_one(ModelRow, row.model_id).name)


def list_versions(session: Session, name: str, *, state: str | None = None) -> list[ModelVersion]:
    model = model_row(session, name)
    query = select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
    if state is not None:
        query = query.where(ModelVersionRow.state == state)
    return [_to_version(row, name) for row in session.scalars(query.order_by(ModelVersionRow.number))]


def get_version_report(session: Session, name: str, number: int) -> dict[str, Any]:
    """The stored validation report (JSON) of a version."""
    return orjson.loads(version_row(session, name, number).report_json)  # type: ignore[no-any-return]


def list_transitions(session: Session, name: str, number: int) -> list[Transition]:
    row = version_row(session, name, number)
    rows = session.scalars(
        select(VersionTransitionRow).where(VersionTransitionRow.version_id == row.id).order_by(VersionTransitionRow.id)
    )
    return [Transition.model_validate(t, from_attributes=True) for t in rows]


def update_version_state(
    session: Session, actor: Principal, name: str, number: int, target: VersionState | str, *, reason: str
) -> ModelVersion:
    """Move a version along the transition table; Conflict for an illegal move, audited with the reason."""
    if not reason.strip():
        raise InvalidInput("a reason is required to change a version's state")
    row = version_row(session, name, number, for_update=True)
    check_transition(row.state, target, version_ref=f"{name} v{number}")
    previous = row.state
    now = utcnow()
    row.state = VersionState(target).value
    row.updated_at = now
    session.add(
        VersionTransitionRow(
            version_id=row.id,
            from_state=previous,
            to_state=row.state,
            actor=actor.name,
            reason=reason,
            at=now,
        )
    )
    append(
        session,
        actor=actor,
        action="model.version.transition",
        object_type="model_version",
        object_id=f"{name}/{number}",
        payload={"from": previous, "to": row.state, "reason": reason},
    )
    session.flush()
    return _to_version(row, name)


def update_version_report(
    session: Session,
    actor: Principal,
    name: str,
    number: int,
    *,
    report: dict[str, Any],
    report_hash: str,
    threshold: float,
    reason: str,
) -> ModelVersion:
    """Replace a version's validation report. Approvals bound to the old report no longer count, so an
    approved version returns to ``validated``."""
    row = version_row(session, name, number, for_update=True)
    if row.state in (VersionState.REJECTED, VersionState.RETIRED):
        raise Conflict(f"{name} v{number} is {row.state}; its report can no longer change")
    old_hash = row.report_hash
    row.report_json = _json(report)
    row.report_hash = report_hash
    row.threshold = float(threshold)
    row.updated_at = utcnow()
    append(
        session,
        actor=actor,
        action="model.version.report",
        object_type="model_version",
        object_id=f"{name}/{number}",
        payload={"old_report_hash": old_hash, "report_hash": report_hash, "reason": reason},
    )
    if row.state == VersionState.APPROVED and old_hash != report_hash:
        return update_version_state(
            session,
            actor,
            name,
            number,
            VersionState.VALIDATED,
            reason=f"approvals voided: the validation report changed ({reason})",
        )
    session.flush()
    return _to_version(row, name)
