"""The PCCP gate: judge a candidate version against the site's champion on the plan's frozen test set.

A check evaluates every criterion, stores its results, and writes an evidence bundle (hashes of
the data, both models, the plan and the results) into the audit trail as ``pccp.check``. The
record commits before ``GateFailed`` is raised, so a failed check is never lost. An approver may
record a full review of a failed version, which lets it be deployed beyond shadow.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import orjson
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from vitalops.artifacts import load_predictor, open_store
from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import utcnow
from vitalops.core.ids import content_hash
from vitalops.core.settings import get_settings
from vitalops.db import Database
from vitalops.db.tables.governance import PccpCheckRow, PccpReviewRow
from vitalops.errors import GateFailed, InvalidInput, PolicyViolation
from vitalops.governance import criteria
from vitalops.governance.criteria import Criterion
from vitalops.governance.pccp import current_pccp_row, parse_pccp
from vitalops.registry.deployments import get_alias, list_deployments
from vitalops.registry.schemas import ModelVersion
from vitalops.registry.versions import get_model, get_version, version_row
from vitalops.training.datasets import labelled_rows, read_dataset


class PccpCheck(BaseModel):
    id: int
    model: str
    version: int
    champion_version: int | None
    site: str | None
    pccp_version: int
    passed: bool
    criteria: list[Criterion]
    evidence: dict[str, str]
    evidence_hash: str
    actor: str
    at: datetime

    @property
    def failed(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]


def _champion(session: Session, name: str, site: str | None, candidate: int) -> ModelVersion | None:
    """The site's champion; without a site, the version that is champion at the most sites (None if none)."""
    if site is not None:
        number = get_alias(session, name, site, "champion")
        return None if number is None or number == candidate else get_version(session, name, number)
    champions = [s.version for s in list_deployments(session, name) if s.slot == "champion" and s.version]
    champions = [n for n in champions if n != candidate]
    if not champions:
        return None
    return get_version(session, name, max(set(champions), key=champions.count))


def _locked(candidate: ModelVersion, champion: ModelVersion | None, locked: Sequence[str]) -> list[Criterion]:
    if champion is None or "input_signature" not in locked:
        return []
    same = candidate.signature.inputs == champion.signature.inputs
    return [
        Criterion(
            name="locked.input_signature", value="unchanged" if same else "changed", bound="unchanged", passed=same
        )
    ]


def run_pccp_check(
    database: Database, actor: Principal, name: str, number: int, *, site: str | None = None
) -> PccpCheck:
    """Evaluate every criterion of the model's plan for ``name`` v``number``; store and audit the result.

    Raises GateFailed (after committing the record) when any criterion fails, NotFound when the
    model has no plan, PermissionDenied without ``pccp:check``.
    """
    authorize(database, actor, Permission.PCCP_CHECK, object_type="model_version", object_id=f"{name}/{number}")
    with database.session() as session:
        plan_row = current_pccp_row(session, name)
        plan = parse_pccp(plan_row.spec_yaml, source=f"{name} PCCP v{plan_row.number}")
        candidate = get_version(session, name, number)
        champion = _champion(session, name, site, number)
        model = get_model(session, name)
    store = open_store(get_settings().artifacts_root)
    table, fingerprint = read_dataset(store, plan.frozen_test_set.uri)
    if fingerprint != plan.frozen_test_set.fingerprint:
        raise InvalidInput(
            f"the frozen test set of {name}'s plan has fingerprint {fingerprint}, "
            f"not the {plan.frozen_test_set.fingerprint} the plan names"
        )
    rows = labelled_rows(table, candidate.signature.feature_names)
    if site is not None:
        rows = rows.subset(rows.sites == site)
        if len(rows) == 0:
            raise InvalidInput(f"the frozen test set has no labelled rows for site '{site}'")
    scores = load_predictor(candidate.artifact_sha256, store=store).predict_proba(rows.features)
    results: list[Criterion] = _locked(candidate, champion, plan.locked)
    results += criteria.acceptance(
        rows.labels, scores, candidate.threshold, plan.acceptance, n_resamples=plan.n_resamples, seed=plan.seed
    )
    if champion is not None:
        champion_rows = labelled_rows(table, champion.signature.feature_names)
        if site is not None:
            champion_rows = champion_rows.subset(champion_rows.sites == site)
        champion_scores = load_predictor(champion.artifact_sha256, store=store).predict_proba(champion_rows.features)
        results.append(
            criteria.non_inferiority(rows.labels, scores, champion_scores, plan.non_inferiority.auroc_drop_max)
        )
        results += criteria.behaviour(scores, candidate.threshold, champion_scores, champion.threshold, plan.behaviour)
    results += criteria.subgroup_ratios(rows.attributes, rows.labels, scores, candidate.threshold, plan.subgroups)
    if site is None and np.unique(rows.sites).shape[0] > 1:
        results += criteria.ratios(
            "site",
            np.asarray([str(s) for s in rows.sites], dtype=object),
            rows.labels,
            scores,
            candidate.threshold,
            plan.sites,
            reference="all",
        )
    passed = all(c.passed for c in results)
    results_json = [c.model_dump(mode="json") for c in results]
    evidence = {
        "data_fingerprint": fingerprint,
        "candidate_artifact_sha256": candidate.artifact_sha256,
        "champion_artifact_sha256": champion.artifact_sha256 if champion else "none",
        "candidate_report_hash": candidate.report_hash,
        "pccp_hash": plan_row.spec_hash,
        "results_hash": content_hash(results_json),
    }
    evidence_hash = content_hash(evidence)
    now = utcnow()
    with database.session() as session:
        row = PccpCheckRow(
            version_id=version_row(session, name, number).id,
            pccp_id=plan_row.id,
            champion_version_id=champion.id if champion else None,
            site=site,
            passed=passed,
            results_json=orjson.dumps(results_json).decode(),
            evidence_hash=evidence_hash,
            actor=actor.name,
            at=now,
        )
        session.add(row)
        session.flush()
        append(
            session,
            actor=actor.name,
            action="pccp.check",
            object_type="model_version",
            object_id=f"{name}/{number}",
            payload={
                "check_id": row.id,
                "passed": passed,
                "site": site,
                "pccp_version": plan_row.number,
                "champion_version": champion.number if champion else None,
                "evidence": evidence,
                "evidence_hash": evidence_hash,
                "failed": [c.name for c in results if not c.passed],
                "risk_class": model.risk_class,
            },
        )
        check = PccpCheck(
            id=row.id,
            model=name,
            version=number,
            champion_version=champion.number if champion else None,
            site=site,
            pccp_version=plan_row.number,
            passed=passed,
            criteria=results,
            evidence=evidence,
            evidence_hash=evidence_hash,
            actor=actor.name,
            at=now,
        )
    return check


def raise_if_failed(check: PccpCheck) -> PccpCheck:
    """GateFailed listing the failed criteria, for callers that exit non-zero on failure."""
    if not check.passed:
        failed = [c.name for c in check.failed]
        raise GateFailed(
            f"{check.model} v{check.version} failed its PCCP check: {', '.join(failed)}",
            details={"check_id": check.id, "failed": failed},
        )
    return check


class GateStatus(BaseModel):
    open: bool
    reason: str
    failed: list[str]
    check_id: int | None
    reviewed_by: str | None = None


def gate_status(session: Session, name: str, number: int, *, site: str | None) -> GateStatus:
    """Whether ``name`` v``number`` may go beyond shadow at ``site``: its newest check for that site (or
    for all sites) passed, or an approver's full review came after that check."""
    version = version_row(session, name, number)
    checks = list(
        session.scalars(
            select(PccpCheckRow).where(PccpCheckRow.version_id == version.id).order_by(PccpCheckRow.id.desc())
        )
    )
    relevant = [c for c in checks if c.site is None or c.site == site]
    latest = relevant[0] if relevant else None
    review = session.scalars(
        select(PccpReviewRow).where(PccpReviewRow.version_id == version.id).order_by(PccpReviewRow.id.desc())
    ).first()
    failed = [] if latest is None else [c["name"] for c in orjson.loads(latest.results_json) if not c["passed"]]
    if latest is not None and latest.passed:
        return GateStatus(open=True, reason=f"PCCP check {latest.id} passed", failed=[], check_id=latest.id)
    if review is not None and (latest is None or review.at >= latest.at):
        return GateStatus(
            open=True,
            reason=f"full review recorded by {review.reviewer}",
            failed=failed,
            check_id=None if latest is None else latest.id,
            reviewed_by=review.reviewer,
        )
    if latest is None:
        return GateStatus(open=False, reason="no PCCP check has been run", failed=["pccp.check_missing"], check_id=None)
    return GateStatus(open=False, reason=f"PCCP check {latest.id} failed", failed=failed, check_id=latest.id)


def record_full_review(database: Database, actor: Principal, name: str, number: int, *, reason: str) -> GateStatus:
    """An approver's full review of a version that failed (or skipped) its gate. Needs ``pccp:review``;
    the version's submitter may not review it."""
    authorize(database, actor, Permission.PCCP_REVIEW, object_type="model_version", object_id=f"{name}/{number}")
    if not reason.strip():
        raise InvalidInput("a full review needs a reason")
    with database.session() as session:
        row = version_row(session, name, number)
        if row.submitter == actor.name:
            raise PolicyViolation(f"'{actor.name}' submitted {name} v{number} and may not review it")
        latest = session.scalars(
            select(PccpCheckRow).where(PccpCheckRow.version_id == row.id).order_by(PccpCheckRow.id.desc())
        ).first()
        session.add(
            PccpReviewRow(
                version_id=row.id,
                check_id=None if latest is None else latest.id,
                reviewer=actor.name,
                reason=reason,
                at=utcnow(),
            )
        )
        session.flush()
        append(
            session,
            actor=actor.name,
            action="pccp.review",
            object_type="model_version",
            object_id=f"{name}/{number}",
            payload={"reason": reason, "check_id": None if latest is None else latest.id},
        )
        return gate_status(session, name, number, site=None)


def list_checks(session: Session, name: str, number: int) -> list[dict[str, object]]:
    row = version_row(session, name, number)
    checks = session.scalars(select(PccpCheckRow).where(PccpCheckRow.version_id == row.id).order_by(PccpCheckRow.id))
    return [
        {
            "id": c.id,
            "site": c.site,
            "passed": c.passed,
            "evidence_hash": c.evidence_hash,
            "actor": c.actor,
            "at": c.at,
            "criteria": orjson.loads(c.results_json),
        }
        for c in checks
    ]
