"""Read services of the model plane for the API and the command line, with ``models:read`` enforced.

Each returns JSON-safe dicts built from pydantic shapes; no ORM row leaves.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from vitalops.auth import Permission, Principal, authorize
from vitalops.db import Database
from vitalops.db.tables.registry import ModelVersionRow
from vitalops.errors import NotFound
from vitalops.governance.approvals import list_approvals
from vitalops.governance.gate import gate_status, list_checks
from vitalops.governance.pccp import Pccp, get_pccp
from vitalops.registry.deployments import list_deployment_events, list_deployments
from vitalops.registry.versions import (
    get_model,
    get_version,
    get_version_report,
    list_models,
    list_transitions,
    list_versions,
)
from vitalops.sites import get_site, list_sites
from vitalops.validation.card import ModelCard, build_model_card
from vitalops.validation.report import ValidationReport


def read_models(database: Database, actor: Principal, *, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    authorize(database, actor, Permission.MODELS_READ, object_type="model", object_id="*")
    with database.read_session() as session:
        rows = []
        models = list_models(session, offset=offset, limit=limit)
        # Only the columns a listing shows: reading whole versions would parse every one's JSON.
        numbered: dict[int, list[tuple[int, str]]] = {}
        query = (select(ModelVersionRow.model_id, ModelVersionRow.number, ModelVersionRow.state)
                 .where(ModelVersionRow.model_id.in_([m.id for m in models])).order_by(ModelVersionRow.number))
        for model_id, number, state in session.execute(query):
            numbered.setdefault(model_id, []).append((number, state))
        for model in models:
            versions = numbered.get(model.id, [])
            champions = sorted(
                {
                    f"{s.site}:v{s.version}"
                    for s in list_deployments(session, model.name)
                    if s.slot == "champion" and s.version
                }
            )
            rows.append(
                {
                    **model.model_dump(mode="json"),
                    "versions": len(versions),
                    "latest": versions[-1][0] if versions else None,
                    "latest_state": versions[-1][1] if versions else None,
                    "champions": champions,
                }
            )
        return rows


def read_model(database: Database, actor: Principal, name: str) -> dict[str, Any]:
    authorize(database, actor, Permission.MODELS_READ, object_type="model", object_id=name)
    with database.read_session() as session:
        model = get_model(session, name)
        try:
            pccp: dict[str, Any] | None = get_pccp(session, name).model_dump(mode="json", exclude={"spec_yaml"})
        except NotFound:
            pccp = None
        return {
            "model": model.model_dump(mode="json"),
            "versions": [
                v.model_dump(
                    mode="json",
                    include={"number", "state", "estimator", "artifact_sha256", "submitter", "created_at", "threshold"},
                )
                for v in list_versions(session, name)
            ],
            "deployments": [s.model_dump(mode="json") for s in list_deployments(session, name)],
            "pccp": pccp,
        }


def read_version(database: Database, actor: Principal, name: str, number: int) -> dict[str, Any]:
    authorize(database, actor, Permission.MODELS_READ, object_type="model_version", object_id=f"{name}/{number}")
    with database.read_session() as session:
        version = get_version(session, name, number)
        return {
            "version": version.model_dump(mode="json"),
            "transitions": [t.model_dump(mode="json") for t in list_transitions(session, name, number)],
            "approvals": [a.model_dump(mode="json") for a in list_approvals(session, name, number)],
            "pccp_checks": [
                {k: v for k, v in c.items() if k != "criteria"} for c in list_checks(session, name, number)
            ],
            "gate": gate_status(session, name, number, site=None).model_dump(mode="json"),
            "gates_by_site": {
                site.code: gate_status(session, name, number, site=site.code).model_dump(mode="json")
                for site in list_sites(session)
            },
        }


def read_report(database: Database, actor: Principal, name: str, number: int) -> dict[str, Any]:
    authorize(database, actor, Permission.MODELS_READ, object_type="model_version", object_id=f"{name}/{number}")
    with database.read_session() as session:
        return get_version_report(session, name, number)


def read_deployment_history(
    database: Database, actor: Principal, name: str, *, site: str | None = None, at: Any = None
) -> dict[str, Any]:
    authorize(database, actor, Permission.MODELS_READ, object_type="model", object_id=name)
    with database.read_session() as session:
        if site is not None:
            get_site(session, site)
        return {
            "events": [e.model_dump(mode="json") for e in list_deployment_events(session, name, site=site, at=at)],
            "state": [s.model_dump(mode="json") for s in list_deployments(session, name, site=site, at=at)],
        }


def build_card(database: Database, actor: Principal, name: str, number: int) -> ModelCard:
    """The version's model card (``.to_json()``, ``.to_markdown()``, ``.to_html()``)."""
    authorize(database, actor, Permission.MODELS_READ, object_type="model_version", object_id=f"{name}/{number}")
    with database.read_session() as session:
        model = get_model(session, name)
        version = get_version(session, name, number)
        report = ValidationReport.model_validate(get_version_report(session, name, number))
        approvals = list_approvals(session, name, number)
        try:
            pccp: Pccp | None = get_pccp(session, name)
        except NotFound:
            pccp = None
    version_fields = version.model_dump(mode="json")
    version_fields |= {
        "regulatory_approval": model.profile.regulatory_status,
        "version": version.number,
        "submitted_by": version.submitter,
        "features": [column.name for column in version.signature.inputs],
        "training_data": version.dataset_uri,
    }
    approval_fields = [
        approval.model_dump(mode="json") | {"created_at": approval.at.isoformat()}
        for approval in approvals
        if approval.valid
    ]
    pccp_fields = None
    if pccp is not None:
        pccp_fields = {
            "version": pccp.number,
            "content_hash": pccp.spec_hash,
            "allowed_modifications": pccp.spec.allowed_modifications,
            "acceptance_criteria": pccp.spec.acceptance,
        }
    model_fields = model.model_dump(mode="json", exclude={"profile"}) | model.profile.model_dump(mode="json")
    model_fields["outcome"] = model.output_meaning
    return build_model_card(
        model=model_fields,
        version=version_fields,
        report=report,
        approvals=approval_fields,
        pccp=pccp_fields,
    )
