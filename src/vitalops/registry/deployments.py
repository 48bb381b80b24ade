"""What runs where: append-only deployment events per model and site, and the aliases they imply.

Each site has two slots: ``champion`` (scores for care) and ``challenger`` (a shadow, canary or
A/B version beside it). The current state is the latest event per slot; ``rollback`` undoes the
site's most recent change that has not been undone yet. Aliases (``champion``, ``challenger``)
are read from here, never stored as flags on a version.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Principal
from vitalops.core.clock import as_utc, utcnow
from vitalops.db.tables.governance import DeploymentEventRow
from vitalops.db.tables.registry import ModelVersionRow
from vitalops.errors import Conflict, InvalidInput
from vitalops.registry.versions import model_row, version_row

SLOTS = ("champion", "challenger")
MODES = ("shadow", "canary", "ab", "champion")


class DeploymentMode(BaseModel):
    mode: str
    percent: int | None = None

    @property
    def slot(self) -> str:
        return "champion" if self.mode == "champion" else "challenger"

    def __str__(self) -> str:
        return self.mode if self.percent is None else f"{self.mode}:{self.percent}"


def parse_mode(text: str) -> DeploymentMode:
    """``shadow``, ``champion``, ``canary:<pct>`` or ``ab:<pct>`` (1-99); InvalidInput otherwise."""
    mode, _, pct = text.strip().partition(":")
    if mode in ("shadow", "champion") and not pct:
        return DeploymentMode(mode=mode)
    if mode in ("canary", "ab") and pct.isdigit() and 1 <= int(pct) <= 99:
        return DeploymentMode(mode=mode, percent=int(pct))
    raise InvalidInput(f"deployment mode '{text}' is not one of shadow, champion, canary:<1-99>, ab:<1-99>")


class SlotState(BaseModel):
    site: str
    slot: str
    version: int | None
    mode: str | None
    percent: int | None
    since: datetime | None
    #: The end of the period the deployment was declared for, if any (informational: nothing acts on it).
    ends_at: datetime | None = None


class DeploymentEvent(BaseModel):
    id: int
    model: str
    site: str
    slot: str
    version: int | None
    previous_version: int | None
    mode: str
    percent: int | None
    action: str
    actor: str
    reason: str
    at: datetime
    ends_at: datetime | None = None


def _numbers(session: Session, ids: set[int | None]) -> dict[int | None, int | None]:
    real = {i for i in ids if i is not None}
    rows = session.execute(select(ModelVersionRow.id, ModelVersionRow.number).where(ModelVersionRow.id.in_(real)))
    mapping: dict[int | None, int | None] = {None: None}
    mapping.update({row.id: row.number for row in rows})
    return mapping


def list_deployment_events(
    session: Session, name: str, *, site: str | None = None, at: datetime | None = None
) -> list[DeploymentEvent]:
    """The model's deployment history, oldest first (up to ``at`` when given)."""
    model = model_row(session, name)
    query = select(DeploymentEventRow).where(DeploymentEventRow.model_id == model.id)
    if site is not None:
        query = query.where(DeploymentEventRow.site == site)
    if at is not None:
        query = query.where(DeploymentEventRow.at <= as_utc(at))
    rows = list(session.scalars(query.order_by(DeploymentEventRow.id)))
    numbers = _numbers(session, {r.version_id for r in rows} | {r.previous_version_id for r in rows})
    return [
        DeploymentEvent(
            id=r.id,
            model=name,
            site=r.site,
            slot=r.slot,
            version=numbers[r.version_id],
            previous_version=numbers[r.previous_version_id],
            mode=r.mode,
            percent=r.percent,
            action=r.action,
            actor=r.actor,
            reason=r.reason,
            at=r.at,
            ends_at=r.ends_at,
        )
        for r in rows
    ]


def list_deployments(
    session: Session, name: str, *, site: str | None = None, at: datetime | None = None
) -> list[SlotState]:
    """The state of every site's slots now (or at ``at``); an emptied slot has ``version`` None."""
    latest: dict[tuple[str, str], DeploymentEvent] = {}
    for event in list_deployment_events(session, name, site=site, at=at):
        latest[(event.site, event.slot)] = event
    return [
        SlotState(
            site=s,
            slot=slot,
            version=e.version,
            mode=e.mode if e.version else None,
            percent=e.percent if e.version else None,
            since=e.at,
            ends_at=e.ends_at if e.version else None,
        )
        for (s, slot), e in sorted(latest.items())
    ]


def get_alias(session: Session, name: str, site: str, alias: str = "champion") -> int | None:
    """The version number an alias (``champion`` or ``challenger``) points at for ``site``, or None."""
    for state in list_deployments(session, name, site=site):
        if state.slot == alias:
            return state.version
    return None


def _current_version_id(session: Session, model_id: int, site: str, slot: str) -> int | None:
    row = session.scalars(
        select(DeploymentEventRow)
        .where(
            DeploymentEventRow.model_id == model_id, DeploymentEventRow.site == site, DeploymentEventRow.slot == slot
        )
        .order_by(DeploymentEventRow.id.desc())
    ).first()
    return None if row is None else row.version_id


def _record(
    session: Session,
    *,
    model_id: int,
    name: str,
    site: str,
    slot: str,
    version_id: int | None,
    mode: str,
    percent: int | None,
    action: str,
    actor: Principal,
    reason: str,
    ends_at: datetime | None = None,
) -> None:
    previous = _current_version_id(session, model_id, site, slot)
    numbers = _numbers(session, {version_id, previous})
    session.add(
        DeploymentEventRow(
            model_id=model_id,
            site=site,
            slot=slot,
            version_id=version_id,
            previous_version_id=previous,
            mode=mode,
            percent=percent,
            action=action,
            actor=actor.name,
            reason=reason,
            at=utcnow(),
            ends_at=ends_at,
        )
    )
    session.flush()
    append(
        session,
        actor=actor,
        action=f"deployment.{action}",
        object_type="model",
        object_id=name,
        payload={
            "site": site,
            "slot": slot,
            "version": numbers[version_id],
            "previous_version": numbers[previous],
            "mode": mode,
            "percent": percent,
            "reason": reason,
            **({"ends_at": ends_at} if ends_at is not None else {}),
        },
    )


def apply_deployment(
    session: Session, *, actor: Principal, name: str, number: int, site: str, mode: DeploymentMode, reason: str,
    ends_at: datetime | None = None,
) -> None:
    """Write the events of a deployment (checks are the caller's). A version promoted to champion
    leaves the challenger slot when it was there. ``ends_at`` records the end of a declared period."""
    model = model_row(session, name)
    version = version_row(session, name, number)
    if mode.slot == "champion" and _current_version_id(session, model.id, site, "challenger") == version.id:
        _record(
            session,
            model_id=model.id,
            name=name,
            site=site,
            slot="challenger",
            version_id=None,
            mode="none",
            percent=None,
            action="deploy",
            actor=actor,
            reason=f"promoted to champion: {reason}",
        )
    _record(
        session,
        model_id=model.id,
        name=name,
        site=site,
        slot=mode.slot,
        version_id=version.id,
        mode=mode.mode,
        percent=mode.percent,
        action="deploy",
        actor=actor,
        reason=reason,
        ends_at=ends_at,
    )


def _undoable_row(session: Session, model_id: int, site: str) -> DeploymentEventRow | None:
    rows = session.scalars(
        select(DeploymentEventRow)
        .where(DeploymentEventRow.model_id == model_id, DeploymentEventRow.site == site)
        .order_by(DeploymentEventRow.id.desc())
    )
    pending = 0
    for row in rows:
        if row.action == "rollback":
            pending += 1
        elif pending:
            pending -= 1
        else:
            return row
    return None


def undoable_change(session: Session, name: str, site: str) -> DeploymentEvent | None:
    """The change ``apply_rollback`` would undo at ``site`` now, or None when there is none."""
    target = _undoable_row(session, model_row(session, name).id, site)
    if target is None:
        return None
    return next(event for event in list_deployment_events(session, name, site=site) if event.id == target.id)


def apply_rollback(session: Session, *, actor: Principal, name: str, site: str, reason: str) -> DeploymentEvent:
    """Undo the site's most recent change not yet undone. Conflict when there is nothing to undo."""
    model = model_row(session, name)
    target = _undoable_row(session, model.id, site)
    if target is None:
        raise Conflict(f"model '{name}' has no deployment at site '{site}' to roll back")
    restored_mode = "none"
    if target.previous_version_id is not None:
        earlier = session.scalars(
            select(DeploymentEventRow)
            .where(
                DeploymentEventRow.model_id == model.id,
                DeploymentEventRow.site == site,
                DeploymentEventRow.slot == target.slot,
                DeploymentEventRow.version_id == target.previous_version_id,
                DeploymentEventRow.id < target.id,
            )
            .order_by(DeploymentEventRow.id.desc())
        ).first()
        restored_mode = earlier.mode if earlier is not None else target.slot
    _record(
        session,
        model_id=model.id,
        name=name,
        site=site,
        slot=target.slot,
        version_id=target.previous_version_id,
        mode=restored_mode,
        percent=None,
        action="rollback",
        actor=actor,
        reason=reason,
    )
    return list_deployment_events(session, name, site=site)[-1]
