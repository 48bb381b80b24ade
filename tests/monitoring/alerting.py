"""Alerting fixtures through the public services: a model with a champion at two sites and a canary
at one, rules filed as an operator, and metric results seeded with ``monitoring.results.upsert``
(so these tests do not depend on the engine's computations)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.governance.plans import ALICE, SCIENTIST, register_sites
from vitalops.auth import Principal, Role
from vitalops.db import Database
from vitalops.monitoring.results import MetricResult, upsert
from vitalops.registry.deployments import apply_deployment, parse_mode
from vitalops.registry.schemas import ModelCreate, Signature, VersionCreate
from vitalops.registry.versions import create_model, create_version

MODEL = "sepsis"
OPERATOR = Principal(name="otto", roles=frozenset({Role.OPERATOR}))
CLINICIAN = Principal(name="casey", roles=frozenset({Role.CLINICIAN}))
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
#: Evaluation time: just after the third daily window (DAY0 + 2 days) closed.
NOW = DAY0 + timedelta(days=3, hours=1)

RULES = """
model: sepsis
rules:
  - id: score-drift
    metric: prediction_drift.score_psi
    window: 1d
    comparison: ">="
    threshold: 0.2
    min_n: 100
    severity: warning
    action: rollback
  - id: creatinine-drift
    metric: input_drift.psi
    window: 1d
    comparison: ">"
    threshold: 0.25
    min_n: 100
    severity: info
    action: none
    sites: [north]
"""


def _version() -> VersionCreate:
    return VersionCreate(source="trained", state="validated", dataset_fingerprint="f" * 64, definitions_version="d1",
                         code_version="0.1.0", estimator="logistic_regression", flavor="sklearn",
                         signature=Signature.of(["hr", "creatinine"]), artifact_sha256="a" * 64, threshold=0.3,
                         report={"auroc": 0.8}, report_hash="r" * 64)


def build_model(database: Database, *, canary: bool = True) -> None:
    """v1 champion at north and south; v2 a canary (10%) at north."""
    register_sites(database, "north", "south")
    with database.session() as session:
        create_model(session, SCIENTIST, ModelCreate(name=MODEL, intended_use="sepsis early warning",
                                                     clinical_owner="Dr. Ward", target_population="adult inpatients"))
        create_version(session, SCIENTIST, MODEL, _version())
        create_version(session, SCIENTIST, MODEL, _version())
    with database.session() as session:
        for site in ("north", "south"):
            apply_deployment(session, actor=ALICE, name=MODEL, number=1, site=site, mode=parse_mode("champion"),
                             reason="test")
        if canary:
            apply_deployment(session, actor=ALICE, name=MODEL, number=2, site="north", mode=parse_mode("canary:10"),
                             reason="test")


def result(metric: str, version: int, site: str, day: int, value: float | None, n: int = 500) -> MetricResult:
    start = DAY0 + timedelta(days=day)
    return MetricResult(metric_id=metric, model=MODEL, version=version, site=site, window_start=start,
                        window_end=start + timedelta(days=1), value=value, n=n,
                        status="insufficient_data" if value is None else "ok", details={"test": "seeded"})


def seed(database: Database, *results: MetricResult) -> None:
    with database.session() as session:
        upsert(session, list(results), run_id="seeded", computed_at=NOW)
