"""Predetermined change-control plans: a versioned, hashed YAML document per model, stored in the database.

A plan says which modifications a new version may make, what stays locked, the frozen test set
it is judged on, and the bounds every candidate must meet (see ``vitalops.governance.gate``).

A plan is governance's, not the submitter's. A data scientist *proposes* a plan version; it takes
force only when approvers approve it (as many distinct approvers as the model's approval policy,
never its proposer, each with their own credential), and the plan it replaces is then
``superseded``. One rejection ends a proposal. Every step is audited, and a proposal shows a
readable diff against the plan in force. A frozen test set must be a dataset frozen in this
installation's artifact store (``artifact:<sha256>``) whose digest is the fingerprint the plan names.
"""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vitalops.artifacts import open_store
from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize, record_denial, require_own_credential
from vitalops.core.clock import utcnow
from vitalops.core.ids import sha256_hex
from vitalops.core.settings import get_settings
from vitalops.db import Database
from vitalops.db.tables.governance import PccpDecisionRow, PccpRow
from vitalops.db.tables.registry import ModelRow
from vitalops.errors import Conflict, IntegrityError, InvalidInput, NotFound, PolicyViolation
from vitalops.registry.input_ranges import DEFAULT_TOLERANCE
from vitalops.registry.versions import model_row

#: A plan version's states: ``proposed`` -> ``in_force`` -> ``superseded``, or ``proposed`` -> ``rejected``.
PLAN_STATES = ("proposed", "in_force", "superseded", "rejected")
ARTIFACT_PREFIX = "artifact:"
_SHA256_HEX = frozenset("0123456789abcdef")

#: What a plan may keep fixed across versions.
LockedAspect = Literal["input_signature", "intended_use", "output_meaning"]


def _everything_locked() -> list[LockedAspect]:
    """The default of a plan's ``locked``: every aspect."""
    return ["input_signature", "intended_use", "output_meaning"]


class FrozenTestSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uri: str
    fingerprint: str


class NonInferiority(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auroc_drop_max: float = Field(default=0.02, ge=0.0)


class BehaviourBounds(BaseModel):
    """Champion and candidate scored on the same rows, each at its own threshold."""

    model_config = ConfigDict(extra="forbid")

    flag_rate_change_max: float = Field(default=0.05, ge=0.0)
    decision_flip_max: float = Field(default=0.10, ge=0.0, le=1.0)
    psi_max: float = Field(default=0.25, ge=0.0)
    #: PSI bins: this many quantile bins of the champion's scores (edges at its deciles by default),
    #: the outer bins open-ended; empty-bin shares floored at 1e-4.
    psi_bins: int = Field(default=10, ge=2, le=100)


class RatioBounds(BaseModel):
    """A group's metric divided by the reference group's (the largest group; for sites, all rows)."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal["sensitivity", "specificity", "flag_rate", "auroc", "ppv"] = "sensitivity"
    ratio_min: float = 0.8
    ratio_max: float = 1.25
    attributes: list[str] = Field(default_factory=lambda: ["sex", "age_band"])
    small_group_min: int = Field(default=20, ge=1)


class InputBounds(BaseModel):
    """How far beyond its training range a served input may lie, as a fraction of the range's width
    (``vitalops.registry.input_ranges``): within it the prediction is flagged for review, beyond it refused."""

    model_config = ConfigDict(extra="forbid")

    range_tolerance: float = Field(default=DEFAULT_TOLERANCE, ge=0.0, le=10.0)


#: Days a retrained candidate that passed its check runs as a shadow challenger before people judge
#: it, when the plan does not say: two weeks cover both weekday and weekend patterns twice.
DEFAULT_SHADOW_DAYS = 14


class RetrainingBounds(BaseModel):
    """What an alert-triggered retraining does with a candidate that passed its check: it runs as a
    shadow challenger at the alert's site for ``shadow_days`` (``vitalops.monitoring.retraining``)."""

    model_config = ConfigDict(extra="forbid")

    shadow_days: int = Field(default=DEFAULT_SHADOW_DAYS, ge=1, le=365)


class PccpSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    allowed_modifications: list[Literal["retrain", "recalibrate", "threshold_change"]]
    locked: list[LockedAspect] = Field(default_factory=_everything_locked)
    frozen_test_set: FrozenTestSet
    #: ``<metric>_low: bound``: the lower end of the 95% bootstrap interval must reach the bound.
    acceptance: dict[str, float] = Field(default_factory=dict)
    non_inferiority: NonInferiority = Field(default_factory=NonInferiority)
    behaviour: BehaviourBounds = Field(default_factory=BehaviourBounds)
    subgroups: RatioBounds = Field(default_factory=RatioBounds)
    sites: RatioBounds = Field(default_factory=lambda: RatioBounds(attributes=[]))
    inputs: InputBounds = Field(default_factory=InputBounds)
    retraining: RetrainingBounds = Field(default_factory=RetrainingBounds)
    n_resamples: int = Field(default=200, ge=20, le=10_000)
    seed: int = 0


class PlanDecision(BaseModel):
    approver: str
    credential: str
    decision: str
    reason: str
    at: datetime


class FieldChange(BaseModel):
    """One field of the plan that differs from the plan in force (dotted path, JSON values)."""

    field: str
    in_force: Any
    proposed: Any


class Pccp(BaseModel):
    model: str
    number: int
    state: str
    spec: PccpSpec
    spec_yaml: str
    spec_hash: str
    created_at: datetime
    created_by: str
    decided_at: datetime | None = None
    decisions: list[PlanDecision] = Field(default_factory=list)
    approvals_required: int = 1


class PlanDiff(BaseModel):
    """What a proposal changes: each field, and the YAML as a unified diff, against the plan in force."""

    model: str
    proposed_version: int
    in_force_version: int | None
    changes: list[FieldChange]
    unified: str


def parse_pccp(text: str, *, source: str) -> PccpSpec:
    """Validate a plan's YAML text; InvalidInput naming ``source`` and the first bad field."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InvalidInput(f"{source}: not valid YAML") from None
    try:
        return PccpSpec.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise InvalidInput(f"{source}: field '{field}': {first['msg']}", details={"field": field}) from None


def _decisions(session: Session, row: PccpRow) -> list[PlanDecision]:
    rows = session.scalars(
        select(PccpDecisionRow).where(PccpDecisionRow.pccp_id == row.id).order_by(PccpDecisionRow.id)
    )
    return [
        PlanDecision(approver=d.approver, credential=d.credential, decision=d.decision, reason=d.reason, at=d.at)
        for d in rows
    ]


def _to_pccp(session: Session, row: PccpRow, name: str) -> Pccp:
    return Pccp(
        model=name,
        number=row.number,
        state=row.state,
        spec=parse_pccp(row.spec_yaml, source=f"{name} PCCP v{row.number}"),
        spec_yaml=row.spec_yaml,
        spec_hash=row.spec_hash,
        created_at=row.created_at,
        created_by=row.created_by,
        decided_at=row.decided_at,
        decisions=_decisions(session, row),
        approvals_required=session.get_one(ModelRow, row.model_id).approvals_required,
    )


def check_frozen_test_set(frozen: FrozenTestSet, *, source: str) -> None:
    """A frozen test set must be a dataset frozen in this installation's artifact store, whose digest is
    the plan's fingerprint: never a path or a URL. InvalidInput otherwise; IntegrityError if it fails
    verification."""
    digest = frozen.uri.removeprefix(ARTIFACT_PREFIX)
    if not frozen.uri.startswith(ARTIFACT_PREFIX) or len(digest) != 64 or not set(digest) <= _SHA256_HEX:
        raise InvalidInput(
            f"{source}: field 'frozen_test_set.uri' must be 'artifact:<sha256>' of a dataset frozen in this "
            "installation (a path or URL is not accepted)",
            details={"field": "frozen_test_set.uri"},
        )
    if frozen.fingerprint != digest:
        raise InvalidInput(
            f"{source}: field 'frozen_test_set.fingerprint' is not the digest its uri names",
            details={"field": "frozen_test_set.fingerprint"},
        )
    store = open_store(get_settings().artifacts_root)
    if not store.exists(digest):
        raise InvalidInput(
            f"{source}: the frozen test set {frozen.uri} is not in the artifact store",
            details={"field": "frozen_test_set.uri"},
        )
    try:
        store.get(digest)
    except IntegrityError:
        raise IntegrityError(f"{source}: the frozen test set {frozen.uri} fails verification") from None


def propose_pccp(database: Database, actor: Principal, name: str, spec_yaml: str) -> Pccp:
    """Propose a new version of the model's plan; it takes force once approved (``decide_pccp``).

    Needs ``pccp:manage``. InvalidInput for a plan that does not validate, names another model or a
    frozen test set that is not a verified artifact of this installation.
    """
    authorize(database, actor, Permission.PCCP_MANAGE, object_type="model", object_id=name)
    source = f"PCCP for {name}"
    spec = parse_pccp(spec_yaml, source=source)
    if spec.model != name:
        raise InvalidInput(f"the plan names model '{spec.model}', not '{name}'", details={"field": "model"})
    check_frozen_test_set(spec.frozen_test_set, source=source)
    with database.session() as session:
        model = model_row(session, name)
        number = (
            int(
                session.scalar(select(func.coalesce(func.max(PccpRow.number), 0)).where(PccpRow.model_id == model.id))
                or 0
            )
            + 1
        )
        row = PccpRow(
            model_id=model.id,
            number=number,
            spec_yaml=spec_yaml,
            spec_hash=sha256_hex(spec_yaml.encode()),
            created_at=utcnow(),
            created_by=actor.name,
            state="proposed",
        )
        session.add(row)
        session.flush()
        in_force = _in_force_row(session, model.id)
        append(
            session,
            actor=actor,
            action="pccp.proposed",
            object_type="model",
            object_id=name,
            payload={
                "pccp_version": number,
                "spec_hash": row.spec_hash,
                "in_force_version": None if in_force is None else in_force.number,
                "changed_fields": [c.field for c in _field_changes(in_force, row)],
            },
        )
        return _to_pccp(session, row, name)


def decide_pccp(
    database: Database, actor: Principal, name: str, number: int, *, decision: Literal["approve", "reject"], reason: str
) -> Pccp:
    """An approver's decision on a proposed plan version. Once as many distinct approvers as the model's
    policy asks have approved, the plan is in force and the one before it superseded; a rejection ends it.

    Needs ``pccp:approve`` and the approver's own credential; the proposer may not decide (PolicyViolation,
    audited); Conflict unless the version is ``proposed`` or when this approver already decided.
    """
    subject = f"{name}/pccp/{number}"
    authorize(database, actor, Permission.PCCP_APPROVE, object_type="pccp", object_id=subject)
    require_own_credential(database, actor, f"a plan {decision}", object_type="pccp", object_id=subject)
    if not reason.strip():
        raise InvalidInput("a decision on a plan needs a reason", details={"field": "reason"})
    with database.session() as session:
        proposer = _plan_row(session, name, number).created_by
    if proposer == actor.name:
        record_denial(
            database,
            actor,
            "pccp.decision.denied",
            object_type="pccp",
            object_id=subject,
            payload={"rule": "no_self_approval"},
        )
        raise PolicyViolation(
            f"'{actor.name}' proposed {name}'s plan v{number} and may not decide on it",
            details={"rule": "no_self_approval"},
        )
    with database.session() as session:
        row = _plan_row(session, name, number, for_update=True)
        if row.state != "proposed":
            raise Conflict(f"{name}'s plan v{number} is {row.state}; only a proposed plan can be decided")
        earlier = _decisions(session, row)
        if any(d.approver == actor.name for d in earlier):
            raise Conflict(f"'{actor.name}' already decided on {name}'s plan v{number}; another approver must")
        now = utcnow()
        session.add(
            PccpDecisionRow(
                pccp_id=row.id,
                approver=actor.name,
                credential=actor.credential,
                decision=decision,
                reason=reason,
                at=now,
            )
        )
        required = session.get_one(ModelRow, row.model_id).approvals_required
        approvers = {d.approver for d in earlier if d.decision == "approve"} | {actor.name}
        payload: dict[str, Any] = {
            "pccp_version": number,
            "decision": decision,
            "reason": reason,
            "spec_hash": row.spec_hash,
        }
        if decision == "reject":
            row.state, row.decided_at = "rejected", now
        elif len(approvers) >= required:
            previous = _in_force_row(session, row.model_id)
            if previous is not None:
                previous.state = "superseded"
                payload["superseded_version"] = previous.number
            row.state, row.decided_at = "in_force", now
        payload |= {
            "state": row.state,
            "approvals_counted": len(approvers) if decision == "approve" else None,
            "approvals_required": required,
        }
        session.flush()
        append(session, actor=actor, action=f"pccp.{decision}", object_type="model", object_id=name, payload=payload)
        return _to_pccp(session, row, name)


def _plan_row(session: Session, name: str, number: int, *, for_update: bool = False) -> PccpRow:
    model = model_row(session, name)
    query = select(PccpRow).where(PccpRow.model_id == model.id, PccpRow.number == number)
    row = session.scalar(query.with_for_update() if for_update else query)
    if row is None:
        raise NotFound(f"model '{name}' has no plan version {number}")
    return row


def _in_force_row(session: Session, model_id: int) -> PccpRow | None:
    return session.scalars(
        select(PccpRow).where(PccpRow.model_id == model_id, PccpRow.state == "in_force").order_by(PccpRow.number.desc())
    ).first()


def current_pccp_row(session: Session, name: str) -> PccpRow:
    """The plan in force for ``name``; NotFound (saying what is missing) when none is."""
    model = model_row(session, name)
    row = _in_force_row(session, model.id)
    if row is None:
        proposed = session.scalar(
            select(func.count()).select_from(PccpRow).where(PccpRow.model_id == model.id, PccpRow.state == "proposed")
        )
        if proposed:
            raise NotFound(
                f"model '{name}' has no plan in force: {proposed} proposed plan(s) await approval "
                "('vitalops pccp approve')"
            )
        raise NotFound(f"model '{name}' has no change-control plan; propose one with 'vitalops pccp propose'")
    return row


def input_tolerance(session: Session, name: str) -> float:
    """How far beyond their training range ``name``'s served inputs may lie: the plan in force's
    ``inputs.range_tolerance``, or the default while no plan is in force."""
    model = model_row(session, name)
    row = _in_force_row(session, model.id)
    if row is None:
        return DEFAULT_TOLERANCE
    return parse_pccp(row.spec_yaml, source="plan in force").inputs.range_tolerance


def get_pccp(session: Session, name: str, number: int | None = None) -> Pccp:
    """The plan in force (or plan version ``number``, in any state)."""
    row = current_pccp_row(session, name) if number is None else _plan_row(session, name, number)
    return _to_pccp(session, row, name)


def list_pccps(session: Session, name: str) -> list[Pccp]:
    model = model_row(session, name)
    rows = session.scalars(select(PccpRow).where(PccpRow.model_id == model.id).order_by(PccpRow.number))
    return [_to_pccp(session, row, name) for row in rows]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat |= _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return flat
    return {prefix: value}


def _field_changes(in_force: PccpRow | None, proposed: PccpRow) -> list[FieldChange]:
    new = _flatten(parse_pccp(proposed.spec_yaml, source="proposed plan").model_dump(mode="json"))
    old = (
        {}
        if in_force is None
        else _flatten(parse_pccp(in_force.spec_yaml, source="plan in force").model_dump(mode="json"))
    )
    return [
        FieldChange(field=key, in_force=old.get(key), proposed=new.get(key))
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def diff_pccp(session: Session, name: str, number: int) -> PlanDiff:
    """Plan version ``number`` against the plan in force, field by field (defaults filled in) and as text."""
    row = _plan_row(session, name, number)
    in_force = _in_force_row(session, row.model_id)
    if in_force is not None and in_force.id == row.id:
        in_force = None
    old_text = "" if in_force is None else in_force.spec_yaml
    unified = "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            row.spec_yaml.splitlines(keepends=True),
            fromfile="in force" if in_force is None else f"in force (v{in_force.number})",
            tofile=f"proposed (v{row.number})",
        )
    )
    return PlanDiff(
        model=name,
        proposed_version=row.number,
        in_force_version=None if in_force is None else in_force.number,
        changes=_field_changes(in_force, row),
        unified=unified,
    )
