"""Predetermined change-control plans: a versioned, hashed YAML document per model, stored in the database.

A plan says which modifications a new version may make, what stays locked, the frozen test set
it is judged on, and the bounds every candidate must meet (see ``vitalops.governance.gate``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import utcnow
from vitalops.core.ids import sha256_hex
from vitalops.db import Database
from vitalops.db.tables.governance import PccpRow
from vitalops.errors import InvalidInput, NotFound
from vitalops.registry.versions import model_row

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
    n_resamples: int = Field(default=200, ge=20, le=10_000)
    seed: int = 0


class Pccp(BaseModel):
    model: str
    number: int
    spec: PccpSpec
    spec_yaml: str
    spec_hash: str
    created_at: datetime
    created_by: str


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


def _to_pccp(row: PccpRow, name: str) -> Pccp:
    return Pccp(
        model=name,
        number=row.number,
        spec=parse_pccp(row.spec_yaml, source=f"{name} PCCP v{row.number}"),
        spec_yaml=row.spec_yaml,
        spec_hash=row.spec_hash,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def create_pccp(database: Database, actor: Principal, name: str, spec_yaml: str) -> Pccp:
    """File a new version of the model's plan (the newest one governs). Needs ``pccp:manage``."""
    authorize(database, actor, Permission.PCCP_MANAGE, object_type="model", object_id=name)
    spec = parse_pccp(spec_yaml, source=f"PCCP for {name}")
    if spec.model != name:
        raise InvalidInput(f"the plan names model '{spec.model}', not '{name}'")
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
        )
        session.add(row)
        session.flush()
        append(
            session,
            actor=actor.name,
            action="pccp.create",
            object_type="model",
            object_id=name,
            payload={"pccp_version": number, "spec_hash": row.spec_hash},
        )
        return _to_pccp(row, name)


def current_pccp_row(session: Session, name: str) -> PccpRow:
    model = model_row(session, name)
    row = session.scalars(select(PccpRow).where(PccpRow.model_id == model.id).order_by(PccpRow.number.desc())).first()
    if row is None:
        raise NotFound(f"model '{name}' has no change-control plan; file one with 'vitalops pccp set'")
    return row


def get_pccp(session: Session, name: str) -> Pccp:
    """The model's governing (newest) plan."""
    return _to_pccp(current_pccp_row(session, name), name)
