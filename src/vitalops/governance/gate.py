"""The PCCP gate: judge a candidate version against the site's champion on the plan's frozen test set.

A check evaluates every criterion of the plan in force, stores its results, and writes an evidence
bundle (hashes of the data, both models, the plan and the results) into the audit trail as
``pccp.check``. The record commits before ``GateFailed`` is raised, so a failed check is never lost.

A check is ``passed`` when every criterion was evaluated and met, ``failed`` when one was not met,
and ``incomplete`` when none failed but one could not be evaluated (a suppressed small group, one
outcome class): not evaluable is never a pass.

A check is bound to what it judged: the plan version, the champion version, the candidate's
operating threshold and validation-report hash, and its scope (all sites, or one site). The gate at
a site rests on the newest check whose binding still holds there; a change to any of them closes
the gate until a new check passes. A site-scoped check opens the gate at that site only. A failed
or incomplete check opens the gate only through full reviews of that check, by as many distinct
approvers as the model's approval policy (never its submitter, each with their own credential),
each naming every criterion it waives.
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
from vitalops.auth import Permission, Principal, authorize, record_denial, require_own_credential
from vitalops.core.clock import utcnow
from vitalops.core.ids import content_hash
from vitalops.core.settings import get_settings
from vitalops.db import Database
from vitalops.db.tables.governance import PccpCheckRow, PccpReviewRow, PccpRow
from vitalops.db.tables.registry import ModelRow, ModelVersionRow
from vitalops.errors import Conflict, GateFailed, InvalidInput, NotFound, PolicyViolation
from vitalops.governance import criteria
from vitalops.governance.criteria import Criterion
from vitalops.governance.pccp import check_frozen_test_set, current_pccp_row, parse_pccp
from vitalops.registry.deployments import get_alias, list_deployments
from vitalops.registry.schemas import ModelVersion
from vitalops.registry.versions import get_model, get_version, version_row
from vitalops.sites import require_site
from vitalops.training.datasets import labelled_rows, read_dataset

#: A check's outcomes; only ``passed`` opens a gate without a full review.
CHECK_STATUSES = ("passed", "failed", "incomplete")


class PccpCheck(BaseModel):
    id: int
    model: str
    version: int
    champion_version: int | None
    site: str | None
    pccp_version: int
    passed: bool
    status: str
    threshold: float
    report_hash: str
    criteria: list[Criterion]
    evidence: dict[str, str]
    evidence_hash: str
    actor: str
    at: datetime

    @property
    def failed(self) -> list[Criterion]:
        return [c for c in self.criteria if c.evaluable and not c.passed]

    @property
    def not_evaluable(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.evaluable]


def check_status(results: Sequence[Criterion]) -> str:
    """``failed`` if an evaluated criterion was not met, else ``incomplete`` if one could not be
    evaluated, else ``passed``."""
    if any(c.evaluable and not c.passed for c in results):
        return "failed"
    if any(not c.evaluable for c in results):
        return "incomplete"
    return "passed"


def _waivable(results: Sequence[dict[str, object]]) -> list[str]:
    """The criteria a full review of a check must waive: each failed or not evaluable."""
    return [str(c["name"]) for c in results if not c.get("evaluable", True) or not c["passed"]]


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

    Returns the check whatever its outcome (``raise_if_failed`` turns a failed one into GateFailed).
    Raises NotFound when the model has no plan in force, InvalidInput for a site that is not
    registered, PermissionDenied without ``pccp:check``.
    """
    authorize(database, actor, Permission.PCCP_CHECK, object_type="model_version", object_id=f"{name}/{number}")
    with database.session() as session:
        if site is not None:
            require_site(session, site)
        plan_row = current_pccp_row(session, name)
        plan = parse_pccp(plan_row.spec_yaml, source=f"{name} PCCP v{plan_row.number}")
        candidate = get_version(session, name, number)
        champion = _champion(session, name, site, number)
        model = get_model(session, name)
    check_frozen_test_set(plan.frozen_test_set, source=f"{name} PCCP v{plan_row.number}")
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
        rows.labels,
        scores,
        candidate.threshold,
        plan.acceptance,
        patient_keys=rows.patient_keys,
        n_resamples=plan.n_resamples,
        seed=plan.seed,
    )
    if champion is not None:
        champion_rows = labelled_rows(table, champion.signature.feature_names)
        if site is not None:
            champion_rows = champion_rows.subset(champion_rows.sites == site)
        champion_scores = load_predictor(champion.artifact_sha256, store=store).predict_proba(champion_rows.features)
        results.append(
            criteria.non_inferiority(
                rows.labels,
                scores,
                champion_scores,
                plan.non_inferiority.auroc_drop_max,
                patient_keys=rows.patient_keys,
                n_resamples=plan.n_resamples,
                seed=plan.seed,
            )
        )
        results += criteria.behaviour(scores, candidate.threshold, champion_scores, champion.threshold, plan.behaviour)
    results += criteria.subgroup_ratios(
        rows.attributes,
        rows.labels,
        scores,
        candidate.threshold,
        plan.subgroups,
        patient_keys=rows.patient_keys,
        n_resamples=plan.n_resamples,
        seed=plan.seed,
    )
    if site is None and np.unique(rows.sites).shape[0] > 1:
        results += criteria.ratios(
            "site",
            np.asarray([str(s) for s in rows.sites], dtype=object),
            rows.labels,
            scores,
            candidate.threshold,
            plan.sites,
            reference="all",
            patient_keys=rows.patient_keys,
            n_resamples=plan.n_resamples,
            seed=plan.seed,
        )
    status = check_status(results)
    passed = status == "passed"
    results_json = [c.model_dump(mode="json") for c in results]
    evidence = {
        "data_fingerprint": fingerprint,
        "candidate_artifact_sha256": candidate.artifact_sha256,
        "champion_artifact_sha256": champion.artifact_sha256 if champion else "none",
        "candidate_report_hash": candidate.report_hash,
        "candidate_threshold": repr(float(candidate.threshold)),
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
            status=status,
            threshold=float(candidate.threshold),
            report_hash=candidate.report_hash,
            results_json=orjson.dumps(results_json).decode(),
            evidence_hash=evidence_hash,
            actor=actor.name,
            at=now,
        )
        session.add(row)
        session.flush()
        append(
            session,
            actor=actor,
            action="pccp.check",
            object_type="model_version",
            object_id=f"{name}/{number}",
            payload={
                "check_id": row.id,
                "passed": passed,
                "status": status,
                "site": site,
                "pccp_version": plan_row.number,
                "champion_version": champion.number if champion else None,
                "evidence": evidence,
                "evidence_hash": evidence_hash,
                "failed": [c.name for c in results if c.evaluable and not c.passed],
                "not_evaluable": [c.name for c in results if not c.evaluable],
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
            status=status,
            threshold=float(candidate.threshold),
            report_hash=candidate.report_hash,
            criteria=results,
            evidence=evidence,
            evidence_hash=evidence_hash,
            actor=actor.name,
            at=now,
        )
    return check


def raise_if_failed(check: PccpCheck) -> PccpCheck:
    """GateFailed listing the failed (and not evaluable) criteria, for callers that exit non-zero."""
    if not check.passed:
        failed = [c.name for c in check.failed]
        unknown = [c.name for c in check.not_evaluable]
        named = ", ".join(failed + [f"{n} (not evaluable)" for n in unknown])
        raise GateFailed(
            f"{check.model} v{check.version}'s PCCP check is {check.status}: {named}",
            details={"check_id": check.id, "status": check.status, "failed": failed, "not_evaluable": unknown},
        )
    return check


class GateStatus(BaseModel):
    """``failed`` names the criteria the governing check did not meet, ``not_evaluable`` those it could
    not judge (both are what a full review must waive)."""

    open: bool
    reason: str
    failed: list[str]
    check_id: int | None
    not_evaluable: list[str] = []
    reviewed_by: list[str] = []
    reviews_required: int = 0

    def explain(self) -> str:
        """The reason with the criteria named, for a refusal a person reads."""
        named = [f"failed: {', '.join(self.failed)}"] if self.failed else []
        named += [f"not evaluable: {', '.join(self.not_evaluable)}"] if self.not_evaluable else []
        return self.reason + (f" ({'; '.join(named)})" if named else "")


class _Binding(BaseModel):
    """What a check must have judged for the gate at a scope to rest on it."""

    plan_id: int | None
    plan_number: int | None
    champion_id: int | None
    threshold: float
    report_hash: str


def _binding(session: Session, name: str, number: int, site: str | None) -> _Binding:
    version = version_row(session, name, number)
    try:
        plan: PccpRow | None = current_pccp_row(session, name)
    except NotFound:
        plan = None
    champion = _champion(session, name, site, number)
    return _Binding(
        plan_id=None if plan is None else plan.id,
        plan_number=None if plan is None else plan.number,
        champion_id=None if champion is None else champion.id,
        threshold=float(version.threshold),
        report_hash=version.report_hash,
    )


def _stale_because(check: PccpCheckRow, binding: _Binding, session: Session, site: str | None) -> list[str]:
    """Why ``check`` no longer holds for the binding (empty when it holds)."""
    reasons = []
    if check.pccp_id != binding.plan_id:
        judged = session.get_one(PccpRow, check.pccp_id).number
        now = "no plan is in force" if binding.plan_number is None else f"plan v{binding.plan_number} is in force"
        reasons.append(f"it judged plan v{judged}; {now}")
    if check.champion_version_id != binding.champion_id:

        def label(version_id: int | None) -> str:
            return (
                "no champion"
                if version_id is None
                else f"champion v{session.get_one(ModelVersionRow, version_id).number}"
            )

        reasons.append(
            f"it judged against {label(check.champion_version_id)}; "
            f"{'the site' if site else 'the installation'} now has {label(binding.champion_id)}"
        )
    if check.threshold is None or check.threshold != binding.threshold:
        reasons.append("the operating threshold changed since")
    if check.report_hash != binding.report_hash:
        reasons.append("the validation report changed since")
    if check.site is not None and check.site != site:
        reasons.append(f"it judged site {check.site} only")
    return reasons


def _governing_check(session: Session, name: str, number: int, site: str | None) -> tuple[PccpCheckRow | None, str]:
    """The newest check the gate at ``site`` (None: all sites) rests on, or None with the reason."""
    version = version_row(session, name, number)
    binding = _binding(session, name, number, site)
    scopes = [None] if site is None else [None, site]
    checks = [
        c
        for c in session.scalars(
            select(PccpCheckRow).where(PccpCheckRow.version_id == version.id).order_by(PccpCheckRow.id.desc())
        )
        if c.site in scopes
    ]
    for check in checks:
        if not _stale_because(check, binding, session, site):
            return check, ""
    if binding.plan_id is None:
        return None, f"model '{name}' has no plan in force"
    if not checks:
        return None, "no PCCP check has been run" + (f" for {site}" if site else "")
    return None, f"PCCP check {checks[0].id} no longer holds: " + "; ".join(
        _stale_because(checks[0], binding, session, site)
    )


def _reviews(session: Session, check_id: int) -> list[PccpReviewRow]:
    return list(
        session.scalars(select(PccpReviewRow).where(PccpReviewRow.check_id == check_id).order_by(PccpReviewRow.id))
    )


def gate_status(session: Session, name: str, number: int, *, site: str | None) -> GateStatus:
    """Whether ``name`` v``number`` may go beyond shadow at ``site`` (None: judged for all sites): the
    check the gate rests on passed, or enough full reviews of that check waive what it did not pass."""
    check, why = _governing_check(session, name, number, site)
    if check is None:
        missing = "pccp.plan_missing" if "no plan in force" in why else "pccp.check_missing"
        return GateStatus(open=False, reason=why, failed=[missing], check_id=None)
    if check.status == "passed":
        return GateStatus(open=True, reason=f"PCCP check {check.id} passed", failed=[], check_id=check.id)
    results = orjson.loads(check.results_json)
    failed = [str(c["name"]) for c in results if c.get("evaluable", True) and not c["passed"]]
    not_evaluable = [str(c["name"]) for c in results if not c.get("evaluable", True)]
    required = session.get_one(ModelRow, version_row(session, name, number).model_id).approvals_required
    reviewers = sorted({r.reviewer for r in _reviews(session, check.id)})
    if len(reviewers) >= required:
        return GateStatus(
            open=True,
            reason=f"PCCP check {check.id} was {check.status}; full review by {', '.join(reviewers)}",
            failed=failed,
            not_evaluable=not_evaluable,
            check_id=check.id,
            reviewed_by=reviewers,
            reviews_required=required,
        )
    pending = f"; full reviews {len(reviewers)} of {required}" if reviewers else ""
    return GateStatus(
        open=False,
        reason=f"PCCP check {check.id} {check.status}{pending}",
        failed=failed,
        not_evaluable=not_evaluable,
        check_id=check.id,
        reviewed_by=reviewers,
        reviews_required=required,
    )


def record_full_review(
    database: Database,
    actor: Principal,
    name: str,
    number: int,
    *,
    reason: str,
    waives: Sequence[str],
    site: str | None = None,
) -> GateStatus:
    """An approver's full review of the failed or incomplete check the gate at ``site`` rests on,
    naming every criterion it waives. Needs ``pccp:review`` and the reviewer's own credential; the
    version's submitter may not review it (PolicyViolation, audited). Conflict when there is no such
    check, it passed, or this reviewer reviewed it already; InvalidInput when ``waives`` leaves out a
    criterion the check did not pass, or names one it does not have."""
    subject = f"{name}/{number}"
    authorize(database, actor, Permission.PCCP_REVIEW, object_type="model_version", object_id=subject)
    require_own_credential(database, actor, "a full review", object_type="model_version", object_id=subject)
    if not reason.strip():
        raise InvalidInput("a full review needs a reason", details={"field": "reason"})
    with database.session() as session:
        submitter = version_row(session, name, number).submitter
    if submitter == actor.name:
        record_denial(
            database,
            actor,
            "pccp.review.denied",
            object_type="model_version",
            object_id=subject,
            payload={"rule": "no_self_review"},
        )
        raise PolicyViolation(
            f"'{actor.name}' submitted {name} v{number} and may not review it", details={"rule": "no_self_review"}
        )
    with database.session() as session:
        if site is not None:
            require_site(session, site)
        row = version_row(session, name, number, for_update=True)
        check, why = _governing_check(session, name, number, site)
        if check is None:
            raise Conflict(f"nothing to review: {why}; a full review is of a check, so run one first")
        if check.status == "passed":
            raise Conflict(f"PCCP check {check.id} passed; there is nothing to waive")
        results = orjson.loads(check.results_json)
        waivable = set(_waivable(results))
        named = set(waives)
        unknown = sorted(named - {str(c["name"]) for c in results})
        if unknown:
            raise InvalidInput(
                f"PCCP check {check.id} has no criteria {', '.join(unknown)}",
                details={"field": "waives", "unknown": unknown},
            )
        missing = sorted(waivable - named)
        if missing:
            raise InvalidInput(
                f"a full review of check {check.id} must waive every criterion it did not pass; "
                f"missing: {', '.join(missing)}",
                details={"field": "waives", "missing": missing},
            )
        if any(r.reviewer == actor.name for r in _reviews(session, check.id)):
            raise Conflict(f"'{actor.name}' already reviewed check {check.id}; another approver must")
        session.add(
            PccpReviewRow(
                version_id=row.id,
                check_id=check.id,
                reviewer=actor.name,
                reason=reason,
                waived_json=orjson.dumps(sorted(named)).decode(),
                credential=actor.credential,
                at=utcnow(),
            )
        )
        session.flush()
        append(
            session,
            actor=actor,
            action="pccp.review",
            object_type="model_version",
            object_id=subject,
            payload={
                "reason": reason,
                "check_id": check.id,
                "check_status": check.status,
                "site": site,
                "waived": sorted(named),
            },
        )
        return gate_status(session, name, number, site=site)


def list_checks(session: Session, name: str, number: int) -> list[dict[str, object]]:
    row = version_row(session, name, number)
    checks = session.scalars(select(PccpCheckRow).where(PccpCheckRow.version_id == row.id).order_by(PccpCheckRow.id))
    return [
        {
            "id": c.id,
            "site": c.site,
            "passed": c.passed,
            "status": c.status,
            "pccp_version": session.get_one(PccpRow, c.pccp_id).number,
            "threshold": c.threshold,
            "report_hash": c.report_hash,
            "evidence_hash": c.evidence_hash,
            "actor": c.actor,
            "at": c.at,
            "criteria": orjson.loads(c.results_json),
            "reviews": [
                {"reviewer": r.reviewer, "reason": r.reason, "waived": orjson.loads(r.waived_json), "at": r.at}
                for r in _reviews(session, c.id)
            ],
        }
        for c in checks
    ]
