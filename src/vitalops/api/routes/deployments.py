"""``/v1/deployments``: deploy with the gate enforced, roll back, and read history (same services as the CLI)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from vitalops.api.deps import DatabaseDep, PrincipalDep, require
from vitalops.api.params import Label, MomentQuery, Name, NamePath, NameQuery, Reason, VersionNumber
from vitalops.auth import Permission, Principal
from vitalops.core.clock import as_utc
from vitalops.governance.deploy import deploy_version, rollback_deployment
from vitalops.registry.service import read_deployment_history

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])
Reader = Annotated[Principal, Depends(require(Permission.MODELS_READ))]


class DeployBody(BaseModel):
    model: Name
    version: VersionNumber
    sites: list[Name] = Field(min_length=1, max_length=500)
    mode: Label
    reason: Reason = "deployed"
    dry_run: bool = False


class RollbackBody(BaseModel):
    model: Name
    site: Name
    reason: Reason


@router.post("")
def post_deployment(body: DeployBody, database: DatabaseDep, actor: PrincipalDep) -> dict[str, Any]:
    """Plan (``dry_run``) or apply; 409 ``gate_failed`` lists the failed criteria beyond shadow."""
    return deploy_version(
        database,
        actor,
        body.model,
        body.version,
        sites=body.sites,
        mode=body.mode,
        reason=body.reason,
        dry_run=body.dry_run,
    ).model_dump(mode="json")


@router.post("/rollback")
def post_rollback(body: RollbackBody, database: DatabaseDep, actor: PrincipalDep) -> dict[str, Any]:
    return rollback_deployment(database, actor, body.model, site=body.site, reason=body.reason).model_dump(mode="json")


@router.get("/{model}")
def get_history(
    model: NamePath, database: DatabaseDep, actor: Reader, site: NameQuery = None, at: MomentQuery = None
) -> dict[str, Any]:
    return read_deployment_history(database, actor, model, site=site, at=None if at is None else as_utc(at))
