"""Deploy and roll back with the gate enforced in the service, so the API and the command line agree.

Deployments go to registered sites only. Shadow needs ``deploy:shadow`` and a validated or approved
version. Every other mode needs ``deploy:promote`` with the approver's own credential, an approved
version and an open PCCP gate at each site (``governance.gate``); otherwise GateFailed lists the
failed criteria. A refused deployment is audited like a denied permission. ``plan_deployment``
shows what will change before anything is applied.
"""

from __future__ import annotations

from pydantic import BaseModel

from vitalops.auth import Permission, Principal, authorize, record_denial, require_own_credential
from vitalops.db import Database
from vitalops.errors import Conflict, GateFailed, InvalidInput, VitalOpsError
from vitalops.governance.gate import gate_status
from vitalops.registry.deployments import (
    DeploymentEvent,
    DeploymentMode,
    apply_deployment,
    apply_rollback,
    get_alias,
    list_deployments,
    parse_mode,
)
from vitalops.registry.lifecycle import VersionState
from vitalops.registry.versions import get_version
from vitalops.sites import require_site


class PlannedChange(BaseModel):
    site: str
    slot: str
    current_version: int | None
    current_mode: str | None
    new_version: int | None
    new_mode: str | None


class DeploymentPlan(BaseModel):
    model: str
    version: int
    mode: str
    sites: list[str]
    changes: list[PlannedChange]
    gate: str
    applied: bool = False


def plan_deployment(
    database: Database, actor: Principal, name: str, number: int, *, sites: list[str], mode: str
) -> DeploymentPlan:
    """What deploying ``name`` v``number`` in ``mode`` at ``sites`` would change, after every check.

    Raises PermissionDenied, PolicyViolation without the approver's own credential beyond shadow,
    InvalidInput for a site that is not registered, Conflict for a version in the wrong state,
    GateFailed when the PCCP gate is closed for a mode beyond shadow (refusals are audited).
    """
    parsed = parse_mode(mode)
    if not sites:
        raise InvalidInput("name at least one site", details={"field": "sites"})
    subject = f"{name}/{number}"
    permission = Permission.DEPLOY_SHADOW if parsed.mode == "shadow" else Permission.DEPLOY_PROMOTE
    authorize(database, actor, permission, object_type="model_version", object_id=subject)
    if parsed.mode != "shadow":
        require_own_credential(database, actor, f"deploying as {parsed}", object_type="model_version",
                               object_id=subject)
    try:
        return _plan(database, name, number, sites=sites, parsed=parsed)
    except (GateFailed, Conflict, InvalidInput) as refused:
        record_denial(database, actor, "deployment.refused", object_type="model_version", object_id=subject,
                      payload={"mode": str(parsed), "sites": sorted(sites), "code": refused.code,
                               **_refusal_details(refused)})
        raise


def _refusal_details(refused: VitalOpsError) -> dict[str, object]:
    return {key: refused.details[key] for key in ("site", "failed", "check_id", "field") if key in refused.details}


def _plan(database: Database, name: str, number: int, *, sites: list[str], parsed: DeploymentMode) -> DeploymentPlan:
    changes: list[PlannedChange] = []
    gate_note = "not needed for shadow"
    with database.session() as session:
        for site in sites:
            require_site(session, site)
        version = get_version(session, name, number)
        if parsed.mode == "shadow":
            if version.state not in (VersionState.VALIDATED, VersionState.APPROVED):
                raise Conflict(f"{name} v{number} is {version.state}; shadow needs a validated or approved version")
        else:
            if version.state != VersionState.APPROVED:
                raise Conflict(f"{name} v{number} is {version.state}; {parsed.mode} needs an approved version")
            for site in sites:
                status = gate_status(session, name, number, site=site)
                if not status.open:
                    raise GateFailed(
                        f"{name} v{number} cannot be deployed beyond shadow at {site}: {status.explain()}",
                        details={"site": site, "failed": status.failed, "not_evaluable": status.not_evaluable,
                                 "check_id": status.check_id},
                    )
                gate_note = status.reason
        for site in sites:
            current = {s.slot: s for s in list_deployments(session, name, site=site)}
            slot = current.get(parsed.slot)
            changes.append(
                PlannedChange(
                    site=site,
                    slot=parsed.slot,
                    current_version=slot.version if slot else None,
                    current_mode=slot.mode if slot else None,
                    new_version=number,
                    new_mode=str(parsed),
                )
            )
            challenger = current.get("challenger")
            if parsed.slot == "champion" and challenger is not None and challenger.version == number:
                changes.append(
                    PlannedChange(
                        site=site,
                        slot="challenger",
                        current_version=number,
                        current_mode=challenger.mode,
                        new_version=None,
                        new_mode=None,
                    )
                )
    return DeploymentPlan(model=name, version=number, mode=str(parsed), sites=sites, changes=changes, gate=gate_note)



def deploy_version(
    database: Database,
    actor: Principal,
    name: str,
    number: int,
    *,
    sites: list[str],
    mode: str,
    reason: str = "deployed",
    dry_run: bool = False,
) -> DeploymentPlan:
    """Plan, then (unless ``dry_run``) apply in one audited transaction; see ``plan_deployment``."""
    plan = plan_deployment(database, actor, name, number, sites=sites, mode=mode)
    if dry_run:
        return plan
    parsed = parse_mode(mode)
    with database.session() as session:
        for site in sites:
            apply_deployment(session, actor=actor, name=name, number=number, site=site, mode=parsed, reason=reason)
    return plan.model_copy(update={"applied": True})


def rollback_deployment(
    database: Database, actor: Principal, name: str, *, site: str, reason: str = "rolled back"
) -> DeploymentEvent:
    """Undo the site's latest deployment change; needs ``deploy:rollback`` (or ``deploy:promote``)."""
    permission = Permission.DEPLOY_ROLLBACK if actor.can(Permission.DEPLOY_ROLLBACK) else Permission.DEPLOY_PROMOTE
    authorize(database, actor, permission, object_type="model", object_id=name)
    with database.session() as session:
        require_site(session, site)
        return apply_rollback(session, actor=actor, name=name, site=site, reason=reason)


def champion_of(database: Database, name: str, site: str) -> int | None:
    with database.session() as session:
        return get_alias(session, name, site, "champion")
