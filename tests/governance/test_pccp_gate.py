from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tests.governance.plans import plan_in_force, register_sites
from vitalops.artifacts import open_store, save_model
from vitalops.audit import list_events
from vitalops.auth import Principal, Role
from vitalops.errors import Conflict, GateFailed
from vitalops.governance.approvals import approve_version
from vitalops.governance.deploy import deploy_version, rollback_deployment
from vitalops.governance.gate import raise_if_failed, record_full_review, run_pccp_check
from vitalops.registry.deployments import get_alias, list_deployment_events
from vitalops.registry.schemas import ModelCreate, Signature, VersionCreate
from vitalops.registry.versions import create_model, create_version
from vitalops.training.datasets import freeze_dataset
from vitalops.validation.report import build_report
from vitalops.validation.thresholds import ThresholdRule

SCIENTIST = Principal(name="dana", roles=frozenset({Role.DATA_SCIENTIST}))
ALICE = Principal(name="alice", roles=frozenset({Role.APPROVER}), credential="key:test", personal=True)
FEATURES = ["heart_rate", "lactate", "resp_rate"]


def _table(seed: int, n: int = 600) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    label = (1.2 * x[:, 0] + 0.8 * x[:, 1] + rng.normal(size=n) > 0.8).astype(np.int8)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pa.table(
        {
            "patient_key": [f"p{i}" for i in range(n)],
            "site": ["a" if i % 2 else "b" for i in range(n)],
            "encounter_key": [f"e{i}" for i in range(n)],
            "index_time": pa.array([start + timedelta(hours=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
            "label": pa.array(label, pa.int8()),
            "label_known_at": pa.array(
                [start + timedelta(hours=i + 48) for i in range(n)], pa.timestamp("us", tz="UTC")
            ),
            "attr_sex": ["female" if i % 3 else "male" for i in range(n)],
            "attr_age": [float(30 + i % 60) for i in range(n)],
            "attr_race": ["unknown"] * n,
            "attr_ethnicity": ["unknown"] * n,
            **{name: x[:, j] for j, name in enumerate(FEATURES)},
        }
    )


def create_deterioration_model(database) -> None:
    """The model the gate tests (and the API test) register versions of."""
    with database.session() as session:
        create_model(
            session,
            SCIENTIST,
            ModelCreate(
                name="deterioration",
                intended_use="early warning",
                clinical_owner="ward",
                target_population="adults",
                approvals_required=1,
            ),
        )


def _register(database, store, table, columns, number_hint):
    x = np.column_stack([table.column(c).to_numpy() for c in columns])
    y = table.column("label").to_numpy()
    model = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression()),
        ]
    ).fit(x, y)
    bundle = save_model(store, model, flavor="sklearn", feature_names=columns)
    scores = model.predict_proba(x)[:, 1]
    report = build_report(y, scores, threshold_rule=ThresholdRule("fixed", 0.4), groups={}, n_resamples=50,
                          seed=number_hint, threshold=0.4)
    with database.session() as session:
        return create_version(
            session,
            SCIENTIST,
            "deterioration",
            VersionCreate(
                source="registered",
                state="validated",
                dataset_fingerprint="f" * 64,
                definitions_version="d1",
                code_version="test",
                estimator="logistic_regression",
                flavor="sklearn",
                signature=Signature.of(columns),
                artifact_sha256=bundle.sha256,
                threshold=0.4,
                report=report.model_dump(mode="json"),
                report_hash=report.content_hash(),
            ),
        )


@pytest.fixture
def governed(database, settings):
    store = open_store(settings.artifacts_root)
    frozen_uri, fingerprint = freeze_dataset(store, _table(99))
    create_deterioration_model(database)
    register_sites(database, "a", "b")
    plan_in_force(
        database,
        "deterioration",
        f"""
model: deterioration
allowed_modifications: [retrain]
frozen_test_set: {{uri: "{frozen_uri}", fingerprint: "{fingerprint}"}}
acceptance: {{auroc_low: 0.7}}
non_inferiority: {{auroc_drop_max: 0.02}}
behaviour: {{flag_rate_change_max: 0.1, decision_flip_max: 0.2, psi_max: 0.5}}
subgroups: {{attributes: [sex], ratio_min: 0.5, ratio_max: 2.0}}
sites: {{ratio_min: 0.5, ratio_max: 2.0}}
n_resamples: 50
""",
    )
    _register(database, store, _table(1), FEATURES, 1)
    _register(database, store, _table(2), FEATURES, 2)
    _register(database, store, _table(3), ["resp_rate"], 3)  # the key feature group removed
    for number in (1, 2, 3):
        approve_version(database, ALICE, "deterioration", number, reason="reviewed")
    return database


def test_gate_passes_a_retrain_and_blocks_a_weakened_model(governed):
    first = raise_if_failed(run_pccp_check(governed, SCIENTIST, "deterioration", 1))
    assert first.champion_version is None and first.passed
    deploy_version(governed, ALICE, "deterioration", 1, sites=["a", "b"], mode="champion")
    with governed.session() as session:
        assert get_alias(session, "deterioration", "a") == 1

    retrain = run_pccp_check(governed, SCIENTIST, "deterioration", 2, site="a")
    assert retrain.passed and retrain.champion_version == 1
    assert {c.name for c in retrain.criteria} >= {"behaviour.score_psi", "non_inferiority.auroc_drop"}

    with pytest.raises(GateFailed) as caught:
        raise_if_failed(run_pccp_check(governed, SCIENTIST, "deterioration", 3, site="a"))
    assert "locked.input_signature" in caught.value.details["failed"]
    with governed.session() as session:  # the failed check was recorded even though it raised
        checks = list_events(session, action="pccp.check", object_id="deterioration/3")
        assert checks and checks[0].payload["passed"] is False and checks[0].payload["evidence_hash"]

    with pytest.raises(GateFailed):
        deploy_version(governed, ALICE, "deterioration", 3, sites=["a"], mode="canary:10")
    deploy_version(governed, SCIENTIST, "deterioration", 3, sites=["a"], mode="shadow")  # shadow is allowed
    waived = caught.value.details["failed"] + caught.value.details["not_evaluable"]
    record_full_review(governed, ALICE, "deterioration", 3, reason="clinical safety officer accepted the risk",
                       waives=waived, site="a")
    plan = deploy_version(governed, ALICE, "deterioration", 3, sites=["a"], mode="canary:10", dry_run=True)
    assert not plan.applied and plan.changes[0].current_version == 3 and plan.changes[0].new_mode == "canary:10"


def test_rollback_restores_the_previous_champion(governed):
    run_pccp_check(governed, SCIENTIST, "deterioration", 1)
    deploy_version(governed, ALICE, "deterioration", 1, sites=["a"], mode="champion")
    run_pccp_check(governed, SCIENTIST, "deterioration", 2, site="a")  # judged against the champion it replaces
    deploy_version(governed, ALICE, "deterioration", 2, sites=["a"], mode="champion")
    rollback_deployment(governed, ALICE, "deterioration", site="a", reason="alert fired")
    with governed.session() as session:
        assert get_alias(session, "deterioration", "a") == 1
        assert [e.action for e in list_deployment_events(session, "deterioration")] == ["deploy", "deploy", "rollback"]
    rollback_deployment(governed, ALICE, "deterioration", site="a", reason="back to nothing")
    with pytest.raises(Conflict):
        rollback_deployment(governed, ALICE, "deterioration", site="a", reason="nothing left")
