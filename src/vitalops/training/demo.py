"""The model plane of ``vitalops demo``: train, register, approve, gate, deploy and block, end to end.

Both demo models are trained from the feature definitions shipped with the features package;
each model gets a change-control plan, proposed by the data scientist and put in force by two
approvers, judged on a frozen set of the latest rows (which no version trains on). Approvers
approve a version with a reason that answers its validation report's warnings. A second
deterioration version trained on later data goes through the gate; a third, retrained on an
extract taken while the interface engine was down (every vital sign and lab result missing, the input
signature unchanged), is worse than the champion in a way the plan catches, and is refused beyond shadow
with the failed criteria named.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vitalops.artifacts import open_store
from vitalops.auth import Principal
from vitalops.core.settings import get_settings
from vitalops.db import Database
from vitalops.errors import Conflict, GateFailed, PolicyViolation
from vitalops.features import demo_spec_path
from vitalops.features.definitions import load_spec
from vitalops.features.training_set import build_training_set, read_training_set
from vitalops.governance.approvals import approve_version
from vitalops.governance.deploy import deploy_version
from vitalops.governance.gate import PccpCheck, record_full_review, run_pccp_check
from vitalops.governance.pccp import decide_pccp, diff_pccp, propose_pccp
from vitalops.registry.versions import get_model, get_version
from vitalops.training.datasets import ResolvedDataset, freeze_dataset
from vitalops.training.spec import TrainingSpec, spec_from_dict
from vitalops.training.trainer import TrainingResult, train_on_dataset
from vitalops.validation.card import fairness_concerns
from vitalops.validation.report import ValidationReport

DEMO_DEVELOPER = "VitalOps demo hospital, clinical data science team (synthetic data only)"
DEMO_REGULATORY_STATUS = (
    "Not cleared by any regulator: a demonstration on synthetic patients, not for clinical use"
)
DEMO_PROFILES: dict[str, dict[str, Any]] = {
    "deterioration": {
        "description": "Logistic early-warning score from vital signs, labs, conditions and medications, "
        "recomputed every 4 hours of an adult ward stay.",
        "developer": DEMO_DEVELOPER,
        "contact": "clinical data science on-call (demo)",
        "intended_users": "Rapid response nurses and ward physicians, through the EHR",
        "how_to_use": "A flag prompts a bedside review within the hour; it never replaces clinical judgement.",
        "out_of_scope": "Children, ICU patients, emergency department stays, outpatients",
        "regulatory_status": DEMO_REGULATORY_STATUS,
        "limitations": [
            "Trained and validated on a synthetic three-site hospital; performance on real patients is unknown",
            "Relies on timely vital signs: hours since the last vital sign is an input, and gaps lower its accuracy",
        ],
        "keywords": ["deterioration", "early warning", "ICU transfer"],
    },
    "readmission": {
        "description": "Logistic risk of unplanned readmission within 30 days, computed at discharge.",
        "developer": DEMO_DEVELOPER,
        "contact": "clinical data science on-call (demo)",
        "intended_users": "Care transitions nurses",
        "how_to_use": "Ranks discharges for a follow-up call; a weak-signal task, so use it to order work only.",
        "out_of_scope": "Children, planned readmissions, transfers to other hospitals",
        "regulatory_status": DEMO_REGULATORY_STATUS,
        "limitations": ["A weak-signal task: discrimination is modest and wide intervals are expected"],
        "keywords": ["readmission", "transitions of care"],
    },
}
DEMO_MODELS: dict[str, dict[str, str]] = {
    "deterioration": {
        "intended_use": "Flag adult inpatients at risk of ICU transfer or death within 48 hours"
        " for rapid-response review.",
        "clinical_owner": "Rapid response team lead",
        "target_population": "Adult inpatients (18+), scored every 4 hours of the stay",
        "risk_class": "high",
        "output_meaning": "probability of ICU transfer or death within 48 hours",
    },
    "readmission": {
        "intended_use": "Identify adults at risk of readmission within 30 days of discharge for transitional care.",
        "clinical_owner": "Care transitions program lead",
        "target_population": "Adult inpatients at discharge",
        "risk_class": "moderate",
        "output_meaning": "probability of an unplanned readmission within 30 days",
    },
}
#: The features an interface-engine outage empties in the weakened demo version's training extract:
#: every vital sign and lab result (demographics, conditions and orders still arrived).
OUTAGE_PREFIXES = ("heart_rate", "respiratory_rate", "systolic_bp", "spo2", "temperature", "hours_since_vitals",
                   "lactate", "creatinine", "wbc")
FROZEN_SHARE = 0.2  # the latest fifth of index times is the frozen test set
CANARY_SITE = "north"
#: The demo's floor on the lower 95% bound of AUROC. Readmission is a weak-signal task (published
#: models rarely exceed 0.70) and the demo hospital is small, so its floor is "better than chance".
MINIMUM_AUROC_LOW = {"deterioration": 0.6, "readmission": 0.5}


def _later_cut(table: pa.Table, share: float) -> Any:
    times = np.sort(table.column("index_time").cast(pa.timestamp("us", tz="UTC")).to_numpy(zero_copy_only=False))
    return times[int((1.0 - share) * (times.shape[0] - 1))]


def _plan(name: str, uri: str, fingerprint: str) -> str:
    return f"""model: {name}
allowed_modifications: [retrain, recalibrate, threshold_change]
locked: [input_signature, intended_use, output_meaning]
frozen_test_set: {{uri: "{uri}", fingerprint: "{fingerprint}"}}
acceptance: {{auroc_low: 0.6}}
non_inferiority: {{auroc_drop_max: 0.03}}
behaviour: {{flag_rate_change_max: 0.1, decision_flip_max: 0.2, psi_max: 0.25, psi_bins: 10}}
subgroups: {{metric: auroc, ratio_min: 0.8, ratio_max: 1.25, attributes: [sex, age_band], small_group_min: 30}}
sites: {{metric: auroc, ratio_min: 0.8, ratio_max: 1.25, small_group_min: 30}}
n_resamples: 200
seed: 7
"""


def _spec(
    name: str, *, train_fraction: float, external: list[str], exclude: list[str], minimums: dict[str, float]
) -> TrainingSpec:
    return spec_from_dict(
        {
            "model": {"name": name, **DEMO_MODELS[name], "approvals_required": 2, "profile": DEMO_PROFILES[name]},
            "dataset": {"uri": "demo:prebuilt", "exclude_features": exclude},
            "estimator": "logistic_regression",
            "hyperparameters": {"C": 0.5},
            "split": {"train_fraction": train_fraction, "external_sites": external},
            "seed": 7,
            "threshold": {"kind": "sensitivity", "value": 0.8},
            "validation": {"n_resamples": 200},
            "minimums": minimums,
        },
        source=f"demo spec for {name}",
    )


def _during_outage(dataset: ResolvedDataset) -> ResolvedDataset:
    """The development set as an extract taken during an interface outage: vitals and labs all missing."""
    table = dataset.table
    for index, column in enumerate(table.column_names):
        if column.startswith(OUTAGE_PREFIXES):
            table = table.set_column(index, column, pa.nulls(table.num_rows, type=table.schema.field(column).type))
    return ResolvedDataset(table, dataset.feature_names, dataset.fingerprint, dataset.definitions_version, None)


def approval_reason(report: ValidationReport, report_hash: str, *, purpose: str) -> str:
    """An approver's reason that answers the validation report's warnings one kind at a time: subgroup
    differences outside the card's bounds, groups too small to judge, intervals resting on few outcomes."""
    concerns = fairness_concerns(report)
    too_small = sorted({w.split(":")[0] for w in report.warnings if "suppressed" in w})
    few_outcomes = sorted({w.split(":")[0] for w in report.warnings if "one outcome class" in w})
    answered = set(too_small) | set(few_outcomes)
    other = [w for w in report.warnings if w.split(":")[0] not in answered]
    unit = "" if report.resampling is None else f" ({report.resampling.description})"
    parts = [f"Reviewed validation report {report_hash[:12]}{unit} for {purpose}."]
    if concerns:
        parts.append("Subgroup differences the card warns of: " + "; ".join(concerns[:3])
                     + (f" (and {len(concerns) - 3} more)" if len(concerns) > 3 else "")
                     + ". Accepted only with monthly subgroup monitoring and a review if a ratio stays outside.")
    if too_small:
        parts.append(f"Too few patients to judge {', '.join(too_small)}: not judged here, followed in monitoring.")
    if few_outcomes:
        parts.append(f"Few outcomes behind {', '.join(few_outcomes)}: wide intervals, read with care.")
    parts += [f"Noted: {w}." for w in other[:3]]
    if not report.warnings and not concerns:
        parts.append("It records no warnings.")
    return " ".join(parts)


def _check_summary(check: PccpCheck) -> dict[str, Any]:
    return {
        "version": check.version, "check_id": check.id, "status": check.status, "passed": check.passed,
        "pccp_version": check.pccp_version, "champion_version": check.champion_version,
        "failed": [c.name for c in check.failed], "not_evaluable": [c.name for c in check.not_evaluable],
    }


def _open_gate_by_review(database: Database, approvers: list[Principal], name: str, check: PccpCheck) -> list[str]:
    """When a check is incomplete only (nothing failed), approvers waive what could not be evaluated."""
    if check.status != "incomplete":
        return []
    waived = [c.name for c in check.not_evaluable]
    for approver in approvers:
        record_full_review(database, approver, name, check.version, waives=waived,
                           reason="groups too small in the frozen test set to judge; each is followed per site "
                           "and subgroup in monitoring after deployment")
    return waived


def run_model_plane_demo(
    database: Database,
    lake_root: str,
    *,
    data_scientist: Principal,
    approvers: list[Principal],
    progress: Callable[[str], None] | None = None,
    datasets: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train both demo models, have their plans proposed and put in force, approve, gate, deploy
    deterioration as champion at every site, retrain it on later data, and retrain it on an extract
    taken during an interface outage (worse than the champion: refused beyond shadow, the failed
    criteria named).

    ``approvers`` act with their own keys. ``datasets`` maps a demo model to a training set already
    written by ``vitalops dataset build`` (read back with its fingerprint); a model without one has
    its training set built here.
    """
    note = progress or (lambda _message: None)
    store = open_store(get_settings().artifacts_root)
    summary: dict[str, Any] = {"models": {}}
    gatekeeper = approvers[0]
    for name in DEMO_MODELS:
        definitions = load_spec(demo_spec_path(name))
        if datasets and name in datasets:
            built = read_training_set(datasets[name])
        else:
            note(f"building the {name} training set")
            built = build_training_set(definitions, lake_root)
        table = built.table
        sites = sorted({str(s) for s in table.column("site").to_pylist()})
        external = sites[-1:] if len(sites) >= 3 else []
        cut = _later_cut(table, FROZEN_SHARE)
        later = pc.greater_equal(
            table.column("index_time").cast(pa.timestamp("us", tz="UTC")),
            pa.scalar(cut, type=pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")),
        )
        frozen_uri, frozen_fingerprint = freeze_dataset(store, table.filter(later))
        development = ResolvedDataset(
            table.filter(pc.invert(later)),
            list(built.feature_names),
            built.fingerprint.content_sha256,
            str(definitions.version),
            None,
        )

        def train(
            train_fraction: float,
            minimums: dict[str, float],
            context: tuple[str, list[str], ResolvedDataset] = (name, external, development),
            dataset: ResolvedDataset | None = None,
        ) -> TrainingResult:
            model, held_out, default = context
            spec = _spec(model, train_fraction=train_fraction, external=held_out, exclude=[], minimums=minimums)
            return train_on_dataset(database, data_scientist, spec, dataset or default)

        note(f"training {name} v1")
        first = train(0.6, {"auroc_low": MINIMUM_AUROC_LOW[name]})
        note(f"{name}: plan proposed by {data_scientist.name}, put in force by two approvers")
        plan = propose_pccp(database, data_scientist, name, _plan(name, frozen_uri, frozen_fingerprint))
        with database.session() as session:
            changed = len(diff_pccp(session, name, plan.number).changes)
        for approver in approvers[: plan.approvals_required]:
            plan = decide_pccp(database, approver, name, plan.number, decision="approve",
                               reason="plan reviewed: frozen test set of the latest fifth, locked inputs, "
                               "non-inferiority on the paired interval, subgroup and site ratio bounds")
        record: dict[str, Any] = {
            "sites": sites,
            "external_sites": external,
            "frozen_test_set": frozen_uri,
            "plan": {"version": plan.number, "state": plan.state, "proposed_by": plan.created_by,
                     "approved_by": [d.approver for d in plan.decisions if d.decision == "approve"],
                     "fields": changed},
            "versions": [first.summary()],
        }
        if first.version.state != "validated":
            # Too little signal in this data for the minimums: say so rather than approve a draft.
            record["not_approved"] = f"v1 is {first.version.state}: missed minimums {', '.join(first.failures)}"
            summary["models"][name] = record
            continue
        with database.session() as session:
            required = get_model(session, name).approvals_required
        reason = approval_reason(first.evaluation.report, first.version.report_hash,
                                 purpose=DEMO_MODELS[name]["intended_use"].rstrip(".").lower())
        record["approval_reason"] = reason
        for approver in approvers[:required]:
            approve_version(database, approver, name, first.version.number, reason=reason)
        check = run_pccp_check(database, gatekeeper, name, first.version.number)
        record["checks"] = [_check_summary(check) | {"waived": _open_gate_by_review(database, approvers, name, check)}]
        if name == "deterioration":
            try:
                deploy_version(database, gatekeeper, name, first.version.number, sites=sites, mode="champion",
                               reason="first champion after two approvals and its gate")
                record["champion"] = {site: first.version.number for site in sites}
            except (GateFailed, Conflict, PolicyViolation) as refused:
                record["champion_refused"] = refused.message
            note("training deterioration v2 on later data")
            second = train(0.75, {"auroc_low": 0.5})
            record["versions"].append(second.summary())
            record["checks"].append(_check_summary(run_pccp_check(database, gatekeeper, name, second.version.number)))
            note("training deterioration on an extract taken during an interface outage")
            weakened = train(0.75, {}, dataset=_during_outage(development))
            record["versions"].append(weakened.summary() | {"training_extract": "interface outage: vital signs "
                                                            "and lab results missing"})
            weak_reason = approval_reason(weakened.evaluation.report, weakened.version.report_hash,
                                          purpose="shadow evaluation only; promotion is the PCCP gate's to allow")
            for approver in approvers[:required]:
                try:
                    approve_version(database, approver, name, weakened.version.number, reason=weak_reason)
                except Conflict:
                    break
            # Judged for all sites (every site has the same champion), then tried as a canary at one.
            weak_check = run_pccp_check(database, gatekeeper, name, weakened.version.number)
            blocked: dict[str, Any] = _check_summary(weak_check) | {"canary_site": CANARY_SITE}
            try:
                deploy_version(database, gatekeeper, name, weakened.version.number, sites=[CANARY_SITE],
                               mode="canary:10", reason="attempted canary")
                blocked["deploy_beyond_shadow"] = "allowed"
            except (GateFailed, Conflict, PolicyViolation) as refused:
                blocked["deploy_beyond_shadow"] = f"refused: {refused.message}"
            record["blocked"] = blocked
        with database.session() as session:
            for entry in record["versions"]:
                entry["state"] = get_version(session, name, entry["version"]).state
        summary["models"][name] = record
    return summary
