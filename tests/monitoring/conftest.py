"""A monitored deterioration model, built through the public services: its definitions registered (a
48-hour label horizon), a synthetic training set frozen in the artifact store as the version's
dataset, a logistic model registered and champion at two sites; helpers to log predictions (online
through the serving service, and in bulk through batch scoring into the archive)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tests.governance.plans import ALICE, SCIENTIST, register_sites
from vitalops.artifacts import open_store
from vitalops.artifacts.bundle import save_model_bytes
from vitalops.artifacts.formats import dump_model
from vitalops.auth import Principal, Role
from vitalops.batch.scoring import score_batch
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.features import demo_spec_path, load_spec
from vitalops.features.definition_sets import register_definitions
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.registry.deployments import apply_deployment, parse_mode
from vitalops.registry.schemas import ModelCreate, Signature, VersionCreate
from vitalops.registry.versions import create_model, create_version
from vitalops.serving import LakeFacts, PredictionRequest, Runtime, ServingContext, predict
from vitalops.terminology import load_terminology
from vitalops.training.datasets import freeze_dataset
from vitalops.validation.report import build_report
from vitalops.validation.thresholds import ThresholdRule

MODEL = "deterioration"
SITES = ("north", "south")
OPERATOR = Principal(name="otto", roles=frozenset({Role.OPERATOR}))
CLINICIAN = Principal(name="casey", roles=frozenset({Role.CLINICIAN}))
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
BINARY = ("female", "heart_failure", "copd", "ckd", "type2_diabetes", "sepsis_7d", "vasopressor_active")
#: (mean, sd) of the numeric features; creatinine is drawn separately (a log-normal bulk and a dialysis tail).
NUMERIC = {
    "heart_rate_last": (85, 15), "heart_rate_max_12h": (95, 17), "heart_rate_slope_24h": (0, 2),
    "respiratory_rate_last": (18, 4), "respiratory_rate_max_12h": (21, 4), "respiratory_rate_slope_24h": (0, 0.5),
    "systolic_bp_last": (125, 18), "systolic_bp_min_12h": (112, 17), "systolic_bp_slope_24h": (0, 2),
    "spo2_last": (96, 2), "spo2_min_12h": (94, 3), "temperature_max_24h": (37.3, 0.6),
    "temperature_mean_24h": (36.9, 0.4), "lactate_last": (1.6, 0.8), "lactate_delta_48h": (0, 0.6),
    "creatinine_delta_72h": (0, 0.3), "wbc_last": (9, 3.5), "hours_since_vitals": (4, 3), "age": (64, 16),
    "length_of_stay_hours": (90, 60),
}


def feature_rows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Plausible inputs of the deterioration model, rounded as labs and vitals are, with some missing."""
    columns: dict[str, np.ndarray] = {}
    for name, (mean, sd) in NUMERIC.items():
        columns[name] = np.round(rng.normal(mean, sd, n), 1)
    dialysis = rng.random(n) < 0.03
    columns["creatinine_last"] = np.round(np.where(dialysis, rng.uniform(4, 12, n), rng.lognormal(0, 0.3, n)), 2)
    for name in BINARY:
        columns[name] = (rng.random(n) < 0.2).astype(np.float64)
    columns["lactate_last"][rng.random(n) < 0.4] = np.nan  # not every patient has a lactate
    return columns


@dataclass
class Monitored:
    database: Database
    settings: Settings
    context: ServingContext
    feature_names: list[str]
    rng: np.random.Generator

    @property
    def lake_root(self) -> str:
        return self.settings.lake_root

    def score_day(self, tmp: Path, site: str, day: int, n: int, *, scale: dict[str, float] | None = None) -> None:
        """Batch-score ``n`` rows at ``site`` on day ``day`` (index times spread over the day) into the archive;
        ``scale`` multiplies named features (a unit sent wrongly)."""
        columns = feature_rows(self.rng, n)
        for name, factor in (scale or {}).items():
            columns[name] = columns[name] * factor
        times = [DAY0 + timedelta(days=day, minutes=int(m)) for m in np.sort(self.rng.integers(0, 1440, n))]
        table = pa.table({"patient_key": [f"{site}{day:03d}{i:05d}".ljust(64, "0") for i in range(n)],
                          "site": [site] * n, "index_time": pa.array(times, pa.timestamp("us", tz="UTC")),
                          **{name: columns[name] for name in self.feature_names}})
        path = tmp / f"input-{site}-{day}-{self.rng.integers(1 << 30)}.parquet"
        pq.write_table(table, path)
        score_batch(self.database, OPERATOR, MODEL, str(tmp / f"out-{path.stem}"), lake_root=self.lake_root,
                    runtime=self.context.runtime, input_uri=str(path))

    def predict_online(self, site: str, at: datetime, n: int) -> list[tuple[str, float]]:
        """``n`` predictions through the serving service at ``at``, logged in the database: (id, score)."""
        columns = feature_rows(self.rng, n)
        made = []
        for i in range(n):
            features = {name: (None if np.isnan(columns[name][i]) else float(columns[name][i]))
                        for name in self.feature_names}
            outcome = predict(self.database, self.context, CLINICIAN, MODEL, PredictionRequest(
                site=site, features=features, patient_key=f"p{i % (n // 2 + 1):063d}", at=at + timedelta(seconds=i)))
            made.append((outcome.prediction.id, outcome.prediction.score))
        return made


@dataclass(frozen=True)
class Trained:
    dataset: pa.Table
    model_bytes: bytes
    report: dict
    report_hash: str


@pytest.fixture(scope="session")
def trained() -> Trained:
    """The synthetic training set and the model fitted on it, once per session."""
    names = list(load_spec(demo_spec_path(MODEL)).feature_names)
    rng = np.random.default_rng(2026)
    columns = feature_rows(rng, 3000)
    matrix = np.column_stack([columns[name] for name in names])
    logit = -2.2 + 0.04 * (columns["heart_rate_last"] - 85) + 0.9 * np.log(columns["creatinine_last"]) \
        + 0.03 * (columns["age"] - 64) + 0.8 * columns["sepsis_7d"]
    labels = (rng.random(3000) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    times = [DAY0 - timedelta(days=200) + timedelta(hours=int(h)) for h in rng.integers(0, 24 * 150, 3000)]
    dataset = pa.table({"patient_key": [f"t{i:063d}" for i in range(3000)], "site": ["north"] * 3000,
                        "index_time": pa.array(times, pa.timestamp("us", tz="UTC")), "label": labels,
                        **{name: columns[name] for name in names}})
    model = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                      ("scale", StandardScaler()), ("model", LogisticRegression(max_iter=500))])
    model.fit(matrix, labels)
    report = build_report(labels, model.predict_proba(matrix)[:, 1], threshold_rule=ThresholdRule("fixed", 0.2),
                          groups={}, n_resamples=20, seed=1, threshold=0.2)
    return Trained(dataset, dump_model(model, "sklearn"), report.model_dump(mode="json"), report.content_hash())


@pytest.fixture
def monitored(database: Database, settings: Settings, trained: Trained) -> Monitored:
    spec = load_spec(demo_spec_path(MODEL))
    names = list(spec.feature_names)
    store = open_store(settings.artifacts_root)
    uri, fingerprint = freeze_dataset(store, trained.dataset)
    bundle = save_model_bytes(store, trained.model_bytes, flavor="sklearn", feature_names=names)
    register_sites(database, *SITES)
    with database.session() as session:
        register_definitions(session, spec)
        create_model(session, SCIENTIST, ModelCreate(name=MODEL, intended_use="early warning", clinical_owner="ward",
                                                     target_population="adult inpatients",
                                                     output_meaning="ICU transfer or death within 48 hours"))
        create_version(session, SCIENTIST, MODEL, VersionCreate(
            source="registered", state="validated", dataset_uri=uri, dataset_fingerprint=fingerprint,
            definitions_version=spec.version, code_version="test", estimator="logistic_regression", flavor="sklearn",
            signature=Signature.of(names), artifact_sha256=bundle.sha256, threshold=0.2,
            report=trained.report, report_hash=trained.report_hash))
    with database.session() as session:
        for site in SITES:
            apply_deployment(session, actor=ALICE, name=MODEL, number=1, site=site, mode=parse_mode("champion"),
                             reason="test")
    terminology = load_terminology()
    context = ServingContext(Runtime(store, terminology), LakeFacts(settings.lake_root),
                             Pseudonymizer(b"monitoring-test-key"), terminology)
    return Monitored(database, settings, context, names, np.random.default_rng(2027))
