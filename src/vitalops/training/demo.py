"""The model plane of ``vitalops demo``: train, register, approve, gate, deploy and block, end to end.

Both demo models are trained from the feature definitions shipped with the features package;
each model gets a change-control plan judged on a frozen set of the latest rows (which no
version trains on). A second deterioration version trained on later data passes its gate; a
version trained without the vital-sign features fails it and is refused beyond shadow.
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
from vitalops.errors import Conflict, GateFailed
from vitalops.features import demo_spec_path
from vitalops.features.definitions import load_spec
from vitalops.features.training_set import build_training_set, read_training_set
from vitalops.governance.approvals import approve_version
from vitalops.governance.deploy import deploy_version
from vitalops.governance.gate import run_pccp_check
from vitalops.governance.pccp import create_pccp
from vitalops.registry.versions import get_model, get_version
from vitalops.training.datasets import ResolvedDataset, freeze_dataset
from vitalops.training.spec import TrainingSpec, spec_from_dict
from vitalops.training.trainer import TrainingResult, train_on_dataset

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
#: The feature group the failing demo version leaves out: every vital-sign feature.
VITAL_SIGN_PREFIXES = ("heart_rate", "respiratory_rate", "systolic_bp", "spo2", "temperature", "hours_since_vitals")
FROZEN_SHARE = 0.2  # the latest fifth of index times is the frozen test set
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
            "model": {"name": name, **DEMO_MODELS[name], "approvals_required": 2},
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


def run_model_plane_demo(
    database: Database,
    lake_root: str,
    *,
    data_scientist: Principal,
    approvers: list[Principal],
    progress: Callable[[str], None] | None = None,
    datasets: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train both demo models, file their plans, approve, gate, deploy deterioration as champion at
    every site, retrain it on later data (passes its gate) and without vital signs (fails, blocked).

    ``datasets`` maps a demo model to a training set already written by ``vitalops dataset build``
    (read back with its fingerprint); a model without one has its training set built here.
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
            exclude: list[str],
            minimums: dict[str, float],
            context: tuple[str, list[str], ResolvedDataset] = (name, external, development),
        ) -> TrainingResult:
            model, held_out, dataset = context
            spec = _spec(model, train_fraction=train_fraction, external=held_out, exclude=exclude, minimums=minimums)
            return train_on_dataset(database, data_scientist, spec, dataset)

        note(f"training {name} v1")
        first = train(0.6, [], {"auroc_low": MINIMUM_AUROC_LOW[name]})
        create_pccp(database, data_scientist, name, _plan(name, frozen_uri, frozen_fingerprint))
        record: dict[str, Any] = {
            "sites": sites,
            "external_sites": external,
            "frozen_test_set": frozen_uri,
            "versions": [first.summary()],
        }
        if first.version.state != "validated":
            # Too little signal in this data for the minimums: say so rather than approve a draft.
            record["not_approved"] = f"v1 is {first.version.state}: missed minimums {', '.join(first.failures)}"
            summary["models"][name] = record
            continue
        with database.session() as session:
            required = get_model(session, name).approvals_required
        for approver in approvers[:required]:
            approve_version(database, approver, name, first.version.number, reason="validation report reviewed")
        check = run_pccp_check(database, gatekeeper, name, first.version.number)
        record["checks"] = [
            {"version": first.version.number, "passed": check.passed, "failed": [c.name for c in check.failed]}
        ]
        if name == "deterioration":
            if check.passed:
                deploy_version(
                    database,
                    gatekeeper,
                    name,
                    first.version.number,
                    sites=sites,
                    mode="champion",
                    reason="first champion after approval and a passing gate",
                )
                record["champion"] = {site: first.version.number for site in sites}
            note("training deterioration v2 on later data")
            second = train(0.75, [], {"auroc_low": 0.5})
            record["versions"].append(second.summary())
            retrain_check = run_pccp_check(database, gatekeeper, name, second.version.number)
            record["checks"].append(
                {
                    "version": second.version.number,
                    "passed": retrain_check.passed,
                    "failed": [c.name for c in retrain_check.failed],
                }
            )
            note("training deterioration without vital signs")
            vitals = [f for f in built.feature_names if f.startswith(VITAL_SIGN_PREFIXES)]
            weakened = train(0.75, vitals, {})
            record["versions"].append(weakened.summary() | {"excluded_features": len(vitals)})
            for approver in approvers[:required]:
                try:
                    approve_version(
                        database, approver, name, weakened.version.number, reason="approved for shadow evaluation only"
                    )
                except Conflict:
                    break
            weak_check = run_pccp_check(database, gatekeeper, name, weakened.version.number)
            blocked: dict[str, Any] = {
                "version": weakened.version.number,
                "passed": weak_check.passed,
                "failed": [c.name for c in weak_check.failed],
            }
            try:
                deploy_version(
                    database,
                    gatekeeper,
                    name,
                    weakened.version.number,
                    sites=[sites[0]],
                    mode="canary:10",
                    reason="attempted canary",
                )
                blocked["deploy_beyond_shadow"] = "allowed"
            except (GateFailed, Conflict) as refused:
                blocked["deploy_beyond_shadow"] = f"refused: {refused.message}"
            record["blocked"] = blocked
        with database.session() as session:
            for entry in record["versions"]:
                entry["state"] = get_version(session, name, entry["version"]).state
        summary["models"][name] = record
    return summary
