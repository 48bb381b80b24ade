"""``/v1/models``: the registry, approvals, validation reports, model cards and the PCCP gate.

Thin: each route authenticates, then calls the same service the command line calls, which
enforces the permission again and does the work.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from vitalops.api.deps import DatabaseDep, PrincipalDep, require
from vitalops.api.params import Name, NamePath, Offset, Reason, VersionPath
from vitalops.auth import Permission, Principal
from vitalops.governance.approvals import approve_version, reject_version
from vitalops.governance.gate import record_full_review, run_pccp_check
from vitalops.governance.pccp import decide_pccp, diff_pccp, get_pccp, list_pccps, propose_pccp
from vitalops.registry import service
from vitalops.validation.report import ValidationReport
from vitalops.validation.report_html import render_report_html

router = APIRouter(prefix="/v1/models", tags=["models"])
Reader = Annotated[Principal, Depends(require(Permission.MODELS_READ))]


class Decision(BaseModel):
    decision: Literal["approve", "reject"]
    reason: Reason


class PlanBody(BaseModel):
    yaml: str = Field(min_length=1, max_length=200_000, pattern=r"^[^\x00]*$")


class PlanDecisionBody(BaseModel):
    decision: Literal["approve", "reject"]
    reason: Reason


class CheckBody(BaseModel):
    site: Name | None = None


class ReviewBody(BaseModel):
    reason: Reason
    waives: list[Name] = Field(min_length=1, max_length=500)
    site: Name | None = None


@router.get("")
def get_models(
    database: DatabaseDep, actor: Reader, offset: Offset = 0, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, Any]:
    return {"models": service.read_models(database, actor, offset=offset, limit=limit)}


@router.get("/{name}")
def get_model(name: NamePath, database: DatabaseDep, actor: Reader) -> dict[str, Any]:
    return service.read_model(database, actor, name)


@router.get("/{name}/versions/{number}")
def get_version(name: NamePath, number: VersionPath, database: DatabaseDep, actor: Reader) -> dict[str, Any]:
    return service.read_version(database, actor, name, number)


@router.get("/{name}/versions/{number}/report", response_model=None)
def get_report(
    name: NamePath, number: VersionPath, database: DatabaseDep, actor: Reader, format: Literal["json", "html"] = "json"
) -> dict[str, Any] | Response:  # noqa: A002 - the public query name
    """The validation report as stored (JSON), or rendered as one self-contained HTML page."""
    report = service.read_report(database, actor, name, number)
    if format == "html":
        parsed = ValidationReport.model_validate(report)
        return HTMLResponse(render_report_html(parsed, title=f"Validation report: {name} v{number}"))
    return report


@router.get("/{name}/versions/{number}/approvals")
def get_approvals(name: NamePath, number: VersionPath, database: DatabaseDep, actor: Reader) -> dict[str, Any]:
    return {"approvals": service.read_version(database, actor, name, number)["approvals"]}


@router.post("/{name}/versions/{number}/approvals", status_code=status.HTTP_201_CREATED)
def post_approval(
    name: NamePath, number: VersionPath, body: Decision, database: DatabaseDep, actor: PrincipalDep
) -> dict[str, Any]:
    if body.decision == "approve":
        outcome = approve_version(database, actor, name, number, reason=body.reason)
        return {
            "state": outcome.version.state,
            "approvals_counted": outcome.approvals_counted,
            "approvals_required": outcome.approvals_required,
        }
    return {"state": reject_version(database, actor, name, number, reason=body.reason).state}


@router.get("/{name}/versions/{number}/card")
def get_card(
    name: NamePath,
    number: VersionPath,
    database: DatabaseDep,
    actor: Reader,
    format: Literal["json", "md", "html"] = "json",  # noqa: A002 - the public query name
) -> Response:
    card = service.build_card(database, actor, name, number)
    if format == "html":
        return HTMLResponse(card.to_html())
    if format == "md":
        return PlainTextResponse(card.to_markdown(), media_type="text/markdown")
    return JSONResponse(card.to_json())


@router.get("/{name}/pccp")
def get_plan(name: NamePath, database: DatabaseDep, actor: Reader) -> dict[str, Any]:
    """The plan in force."""
    service.read_model(database, actor, name)
    with database.read_session() as session:
        return get_pccp(session, name).model_dump(mode="json")


@router.post("/{name}/pccp", status_code=status.HTTP_201_CREATED)
def post_plan(name: NamePath, body: PlanBody, database: DatabaseDep, actor: PrincipalDep) -> dict[str, Any]:
    """Propose a plan version; it takes force once approvers approve it. The response carries its diff."""
    plan = propose_pccp(database, actor, name, body.yaml)
    with database.session() as session:
        diff = diff_pccp(session, name, plan.number)
    return {"model": name, "pccp_version": plan.number, "state": plan.state, "spec_hash": plan.spec_hash,
            "approvals_required": plan.approvals_required, "diff": diff.model_dump(mode="json")}


@router.get("/{name}/pccp/versions")
def get_plan_versions(name: NamePath, database: DatabaseDep, actor: Reader) -> dict[str, Any]:
    service.read_model(database, actor, name)
    with database.read_session() as session:
        return {"plans": [p.model_dump(mode="json", exclude={"spec_yaml"}) for p in list_pccps(session, name)]}


@router.get("/{name}/pccp/versions/{number}")
def get_plan_version(name: NamePath, number: VersionPath, database: DatabaseDep, actor: Reader) -> dict[str, Any]:
    """One plan version with its decisions and its diff against the plan in force."""
    service.read_model(database, actor, name)
    with database.read_session() as session:
        return get_pccp(session, name, number).model_dump(mode="json") | {
            "diff": diff_pccp(session, name, number).model_dump(mode="json")
        }


@router.post("/{name}/pccp/versions/{number}/decisions", status_code=status.HTTP_201_CREATED)
def post_plan_decision(
    name: NamePath, number: VersionPath, body: PlanDecisionBody, database: DatabaseDep, actor: PrincipalDep
) -> dict[str, Any]:
    plan = decide_pccp(database, actor, name, number, decision=body.decision, reason=body.reason)
    return {"model": name, "pccp_version": number, "state": plan.state,
            "approvals": sum(d.decision == "approve" for d in plan.decisions),
            "approvals_required": plan.approvals_required}


@router.post("/{name}/versions/{number}/pccp-checks", status_code=status.HTTP_201_CREATED)
def post_check(
    name: NamePath, number: VersionPath, body: CheckBody, database: DatabaseDep, actor: PrincipalDep
) -> dict[str, Any]:
    """Run the gate; the result says ``passed`` and lists every criterion (a failed check is a result, not an error)."""
    return run_pccp_check(database, actor, name, number, site=body.site).model_dump(mode="json")


@router.post("/{name}/versions/{number}/reviews", status_code=status.HTTP_201_CREATED)
def post_review(
    name: NamePath, number: VersionPath, body: ReviewBody, database: DatabaseDep, actor: PrincipalDep
) -> dict[str, Any]:
    """A full review of the failed or incomplete check the gate rests on, naming every criterion it waives."""
    return record_full_review(
        database, actor, name, number, reason=body.reason, waives=body.waives, site=body.site
    ).model_dump(mode="json")
