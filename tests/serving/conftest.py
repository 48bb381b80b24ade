"""A served deterioration model: trained on the synthetic hospital's training set, registered with its
definitions, champion at two registered sites; a second version to deploy beside it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tests.features.conftest import PSEUDONYM_KEY, HospitalLake, demo_sets, hospital_lake  # noqa: F401 - fixtures
from tests.governance.plans import ALICE, SCIENTIST, register_sites
from vitalops.artifacts import open_store, save_model
from vitalops.auth import SYSTEM
from vitalops.db import Database
from vitalops.features import TrainingSet
from vitalops.features.definition_sets import register_definitions
from vitalops.registry.deployments import apply_deployment, parse_mode
from vitalops.registry.schemas import ModelCreate, Signature, VersionCreate
from vitalops.registry.versions import create_model, create_version
from vitalops.serving import LakeFacts, Runtime, ServingContext
from vitalops.training.datasets import labelled_rows
from vitalops.validation.report import build_report
from vitalops.validation.thresholds import ThresholdRule

SITES = ("north", "south")


@dataclass
class Served:
    database: Database
    context: ServingContext
    training_set: TrainingSet
    models: dict[int, Pipeline]
    lake: HospitalLake

    def deploy(self, number: int, mode: str, site: str = "north") -> None:
        with self.database.session() as session:
            apply_deployment(session, actor=ALICE, name="deterioration", number=number, site=site,
                             mode=parse_mode(mode), reason="test")


def _fit(training_set: TrainingSet, c: float) -> tuple[Pipeline, np.ndarray, np.ndarray]:
    rows = labelled_rows(training_set.table, training_set.feature_names)
    model = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                      ("scale", StandardScaler()), ("model", LogisticRegression(C=c, max_iter=500))])
    model.fit(rows.features, rows.labels)
    return model, rows.labels, model.predict_proba(rows.features)[:, 1]


@pytest.fixture
def served(database, settings, hospital_lake, demo_sets) -> Served:  # noqa: F811
    training_set = demo_sets["deterioration"]
    store = open_store(settings.artifacts_root)
    register_sites(database, *SITES)
    with database.session() as session:
        create_model(session, SCIENTIST, ModelCreate(name="deterioration", intended_use="early warning",
                                                     clinical_owner="ward", target_population="adult inpatients",
                                                     output_meaning="ICU transfer or death within 48 hours"))
        register_definitions(session, training_set.spec)
    models = {}
    for number, c in ((1, 1.0), (2, 0.05)):
        model, labels, scores = _fit(training_set, c)
        bundle = save_model(store, model, flavor="sklearn", feature_names=training_set.feature_names)
        report = build_report(labels, scores, threshold_rule=ThresholdRule("fixed", 0.2), groups={}, n_resamples=20,
                              seed=number, threshold=0.2)
        with database.session() as session:
            create_version(session, SCIENTIST, "deterioration", VersionCreate(
                source="registered", state="validated", dataset_fingerprint=training_set.fingerprint.content_sha256,
                definitions_version=training_set.spec.version, code_version="test", estimator="logistic_regression",
                flavor="sklearn", signature=Signature.of(training_set.feature_names), artifact_sha256=bundle.sha256,
                threshold=0.2, report=report.model_dump(mode="json"), report_hash=report.content_hash()))
        models[number] = model
    context = ServingContext(Runtime(store, hospital_lake.terminology), LakeFacts(hospital_lake.lake_root),
                             hospital_lake.pseudonymizer, hospital_lake.terminology)
    result = Served(database, context, training_set, models, hospital_lake)
    for site in SITES:
        result.deploy(1, "champion", site)
    return result


__all__ = ["PSEUDONYM_KEY", "SYSTEM", "Served"]
