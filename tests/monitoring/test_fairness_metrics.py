"""Fairness over time: a version validated on sex and age band is monitored on the same groups, joined
from the lake's Patient facts by patient key; each ratio equals the one computed directly from the
logged predictions and recorded outcomes, small groups are suppressed by the report's rule, and a
ratio needs its minimum sample."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import orjson
import pytest
from sqlalchemy import select

from tests.governance.plans import ALICE, SCIENTIST
from tests.monitoring.conftest import CLINICIAN, DAY0, MODEL, NUMERIC, OPERATOR, SITES
from vitalops.artifacts import open_store
from vitalops.artifacts.bundle import save_model_bytes
from vitalops.auth import SYSTEM
from vitalops.db.tables.registry import ModelVersionRow
from vitalops.db.tables.serving import OutcomeRow, PredictionRow
from vitalops.ingest.service import ingest_paths
from vitalops.lake.facts import FactsStore
from vitalops.monitoring import aggregates as agg
from vitalops.monitoring.engine import run_monitoring
from vitalops.monitoring.fairness import FairnessCounts, GroupCounts, SubgroupPlan, fairness_metrics, subgroup_plan
from vitalops.monitoring.metrics import MIN_SUBGROUP_EVENTS, get_metric
from vitalops.monitoring.results import read_results
from vitalops.registry.deployments import apply_deployment, parse_mode
from vitalops.registry.schemas import Signature, VersionCreate
from vitalops.registry.versions import create_version
from vitalops.serving import PredictionRequest, predict, record_outcome
from vitalops.training.datasets import freeze_dataset
from vitalops.validation.fairness import age_band
from vitalops.validation.report import build_report
from vitalops.validation.thresholds import ThresholdRule

SMALL_GROUP_MIN = 10
#: (sex, age in years at DAY0, patients, rows scored high-risk of each patient's two)
PATIENTS = [("female", 50, 30, 1), ("female", 70, 10, 0), ("male", 50, 15, 2), ("male", 70, 15, 1),
            ("female", 85, 2, 0)]


def _validated_on_subgroups(monitored, trained) -> None:
    """Version 2: the fixture's model, its report judged on sex (reference female) and age band
    (reference 40-64), champion at both sites."""
    rng = np.random.default_rng(5)
    labels = trained.dataset["label"].to_numpy()
    groups = {"sex": rng.choice(["female", "male"], labels.shape[0]),
              "age_band": age_band(rng.uniform(20, 90, labels.shape[0]))}
    report = build_report(labels, rng.random(labels.shape[0]), threshold_rule=ThresholdRule("fixed", 0.2),
                          groups=groups, reference={"sex": "female", "age_band": "40-64"}, n_resamples=20,
                          threshold=0.2, small_group_min=SMALL_GROUP_MIN)
    store = open_store(monitored.settings.artifacts_root)
    uri, fingerprint = freeze_dataset(store, trained.dataset)
    bundle = save_model_bytes(store, trained.model_bytes, flavor="sklearn", feature_names=monitored.feature_names)
    with monitored.database.session() as session:
        definitions = session.scalar(select(ModelVersionRow.definitions_version).limit(1))
        create_version(session, SCIENTIST, MODEL, VersionCreate(
            source="registered", state="validated", dataset_uri=uri, dataset_fingerprint=fingerprint,
            definitions_version=definitions, code_version="test", estimator="logistic_regression",
            flavor="sklearn", signature=Signature.of(monitored.feature_names), artifact_sha256=bundle.sha256,
            threshold=0.2, report=report.model_dump(mode="json"), report_hash=report.content_hash()))
    with monitored.database.session() as session:
        for site in SITES:
            apply_deployment(session, actor=ALICE, name=MODEL, number=2, site=site, mode=parse_mode("champion"),
                             reason="test")


def _patients(monitored, tmp_path) -> dict[str, tuple[str, int, int]]:
    """Ingest the Patient resources of ``PATIENTS`` at north; returns patient key -> (sex, age, high-risk rows).
    Each patient's birth date is distinct, which is how its key is found again among the facts."""
    planted: dict[str, tuple[str, int, int]] = {}
    lines = []
    serial = 0
    for sex, age, count, high in PATIENTS:
        for _ in range(count):
            birth = date(DAY0.year - age, 1, 1) - timedelta(days=serial + 2)  # the birthday has passed by DAY0
            lines.append(orjson.dumps({"resourceType": "Patient", "id": f"fair{serial}", "gender": sex,
                                       "birthDate": birth.isoformat(),
                                       "meta": {"lastUpdated": "2025-06-01T00:00:00Z"}}))
            planted[birth.isoformat()] = (sex, age, high)
            serial += 1
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = ingest_paths(monitored.database, SYSTEM, [path], site="north", lake_root=monitored.lake_root)
    assert report.quarantined == 0
    facts = FactsStore(monitored.lake_root).dataset().to_table().to_pylist()
    return {f["patient_key"]: planted[f["effective_at"].date().isoformat()] for f in facts if f["concept"] == "birth"}


def _features(names, high: bool) -> dict[str, float | None]:
    """Typical inputs (the training means), high-risk ones scored well over the threshold, low-risk well under."""
    base: dict[str, float | None] = {name: float(NUMERIC.get(name, (0.0, 0))[0]) for name in names}
    base.update({"heart_rate_last": 150.0 if high else 70.0, "creatinine_last": 8.0 if high else 0.8,
                 "age": 90.0 if high else 40.0, "sepsis_7d": 1.0 if high else 0.0, "lactate_last": None})
    return base


@pytest.fixture
def scored(monitored, trained, tmp_path):
    _validated_on_subgroups(monitored, trained)
    patients = _patients(monitored, tmp_path)
    rng = np.random.default_rng(11)
    for index, (key, (_, _, high)) in enumerate(sorted(patients.items())):
        for row in range(2):
            outcome = predict(monitored.database, monitored.context, CLINICIAN, MODEL, PredictionRequest(
                site="north", features=_features(monitored.feature_names, row < high), patient_key=key,
                at=DAY0 + timedelta(hours=2, minutes=index * 2 + row)))
            record_outcome(monitored.database, CLINICIAN, outcome.prediction.id,
                           outcome=int(rng.random() < (0.7 if row < high else 0.3)),
                           observed_at=DAY0 + timedelta(days=1), source="ehr")
    run_monitoring(monitored.database, OPERATOR, lake_root=monitored.lake_root,
                   store=open_store(monitored.settings.artifacts_root), model=MODEL,
                   now=DAY0 + timedelta(days=3, hours=1))
    return monitored, patients


def _direct(monitored, patients, attribute) -> dict[str, dict[str, float]]:
    """Per group: flag rate, sensitivity and PPV straight from the logged rows and their outcomes."""
    with monitored.database.session() as session:
        rows = session.execute(select(PredictionRow.patient_key, PredictionRow.decision, PredictionRow.score,
                                      PredictionRow.threshold, OutcomeRow.outcome)
                               .join(OutcomeRow, OutcomeRow.prediction_id == PredictionRow.id)).all()
    table: dict[str, list[tuple[bool, bool, int]]] = {}
    for key, decision, score, threshold, outcome in rows:
        sex, age, _ = patients[key]
        group = sex if attribute == "sex" else str(age_band([age])[0])
        table.setdefault(group, []).append((bool(decision), score >= threshold, int(outcome)))
    direct = {}
    for group, items in table.items():
        flags = np.array([i[0] for i in items])
        at_threshold = np.array([i[1] for i in items])
        events = np.array([i[2] for i in items]) == 1
        with np.errstate(invalid="ignore"):  # a group nobody in it was flagged has no PPV
            direct[group] = {"flag_rate": flags.mean(), "sensitivity": (at_threshold & events).sum() / events.sum(),
                             "ppv": (at_threshold & events).sum() / at_threshold.sum(), "rows": len(items)}
    return direct


def test_each_ratio_equals_the_direct_calculation_and_small_groups_are_suppressed(scored):
    monitored, patients = scored
    with monitored.database.session() as session:
        results = {r.metric_id: r for r in read_results(session, model=MODEL, site="north", version=2)
                   if r.metric_id.startswith("fairness.")}
    direct = _direct(monitored, patients, "sex")
    for family, metric in (("flag_rate_ratio", "flag_rate"), ("sensitivity_ratio", "sensitivity"),
                           ("ppv_ratio", "ppv")):
        result = results[f"fairness.{family}/sex.male"]
        assert result.value == pytest.approx(direct["male"][metric] / direct["female"][metric], rel=1e-12)
        assert result.details["reference_group"] == "female" and result.details["group"] == "male"
        assert result.details["reference_value"] == pytest.approx(direct["female"][metric], rel=1e-12)
    flag_rate = results["fairness.flag_rate_ratio/sex.male"]
    assert flag_rate.n == direct["male"]["rows"] == 60
    assert flag_rate.value > 1.25 and flag_rate.status == "flagged" and flag_rate.details["chi2_pvalue"] < 0.01
    # the reference group gets no row of its own
    assert "fairness.flag_rate_ratio/sex.female" not in results
    # age band: 80+ has 4 rows (under 10) and 65-79, the next-smallest, is hidden with it, so that 80+
    # cannot be worked out from the total; neither shows a value or a count
    bands = _direct(monitored, patients, "age_band")
    assert bands["80+"]["rows"] == 4 and bands["65-79"]["rows"] == 50
    for group in ("80+", "65-79"):
        hidden = results[f"fairness.flag_rate_ratio/age_band.{group}"]
        assert hidden.status == "insufficient_data" and hidden.value is None and hidden.n == 0
        assert hidden.details["suppressed"] is True
    text = orjson.dumps([r.model_dump(mode="json") for r in results.values()]).decode()
    assert not any(key in text for key in patients)
    for metric_id in results:
        get_metric(metric_id)


def test_sensitivity_and_ppv_wait_for_the_label_horizon(monitored, trained, tmp_path):
    _validated_on_subgroups(monitored, trained)
    patients = _patients(monitored, tmp_path)
    for index, key in enumerate(sorted(patients)):
        predict(monitored.database, monitored.context, CLINICIAN, MODEL, PredictionRequest(
            site="north", features=_features(monitored.feature_names, index % 2 == 0), patient_key=key,
            at=DAY0 + timedelta(hours=1, minutes=index)))
    run_monitoring(monitored.database, OPERATOR, lake_root=monitored.lake_root,
                   store=open_store(monitored.settings.artifacts_root), model=MODEL,
                   now=DAY0 + timedelta(days=1, hours=1))
    with monitored.database.session() as session:
        ids = {r.metric_id for r in read_results(session, model=MODEL) if r.metric_id.startswith("fairness.")}
    assert "fairness.flag_rate_ratio/sex.male" in ids
    assert not any(i.startswith(("fairness.sensitivity_ratio", "fairness.ppv_ratio")) for i in ids)


def _written(counts: FairnessCounts, key, matured=True) -> dict[str, tuple]:
    rows: dict[str, tuple] = {}

    def add(metric_id, version, site, value, n, status, details):
        definition = get_metric(metric_id)
        if n < definition.min_n:
            value, status = None, "insufficient_data"
        rows[metric_id] = (value, n, status, details)

    fairness_metrics(add, counts, key, labels_matured=matured)
    return rows


def test_a_ratio_below_its_minimum_is_insufficient_and_so_is_one_against_a_small_reference():
    key = (1, "north", 0)
    plan = SubgroupPlan(("sex",), {"sex": "female"}, 5)
    # male: 15 events, 15 non-events: shown by the suppression rule (minimum 5) but under 20 events
    counts = FairnessCounts({1: plan}, {key: {"sex": {
        "female": GroupCounts(rows=100, flagged=40, labelled=100, events=50, events_flagged=30, labelled_flagged=40),
        "male": GroupCounts(rows=30, flagged=12, labelled=30, events=15, events_flagged=9, labelled_flagged=12)}}})
    rows = _written(counts, key)
    value, n, status, details = rows["fairness.sensitivity_ratio/sex.male"]
    assert (value, n, status) == (None, 15, "insufficient_data") and 15 < MIN_SUBGROUP_EVENTS
    value, n, status, details = rows["fairness.flag_rate_ratio/sex.male"]
    assert n == 30 and status == "ok" and value == pytest.approx((12 / 30) / (40 / 100))
    # the reference below its minimum: no ratio for anyone
    counts.groups[key]["sex"]["female"] = GroupCounts(rows=25, flagged=10, labelled=25, events=12, events_flagged=6,
                                                      labelled_flagged=10)
    rows = _written(counts, key)
    assert rows["fairness.flag_rate_ratio/sex.male"][0] is None
    assert "reference group" in rows["fairness.flag_rate_ratio/sex.male"][3]["reason"]
    # before the labels mature only the flag rate is written
    assert set(_written(counts, key, matured=False)) == {"fairness.flag_rate_ratio/sex.male"}


def test_the_plan_is_read_from_the_versions_report():
    report = {"small_group_min": 30, "subgroups": [
        {"attribute": "sex", "group": "female", "reference_group": "female"},
        {"attribute": "sex", "group": "male", "reference_group": "female"},
        {"attribute": "site", "group": "north", "reference_group": "north"},
        {"attribute": "age_band", "group": "80+", "reference_group": "40-64"}]}
    plan = subgroup_plan(orjson.dumps(report).decode())
    assert plan == SubgroupPlan(("sex", "age_band"), {"sex": "female", "age_band": "40-64"}, 30)
    assert subgroup_plan(orjson.dumps({"subgroups": []}).decode()) is None
    assert get_metric("fairness.ppv_ratio/age_band.80+").per == "subgroup"
    assert agg.epoch_us(DAY0) % 86_400_000_000 == 0


def test_the_dask_engine_stores_the_same_fairness_results(scored):
    from vitalops.db.tables.monitoring import MonitoringResultRow

    distributed = pytest.importorskip("distributed")
    monitored, _ = scored

    def stored() -> dict:
        with monitored.database.session() as session:
            return {(r.metric_id, r.version, r.site, r.window_start): (r.value, r.n, r.status, r.details_json)
                    for r in session.scalars(select(MonitoringResultRow))}

    local = stored()
    assert sum(key[0].startswith("fairness.") for key in local) >= 9
    with monitored.database.session() as session:
        session.execute(MonitoringResultRow.__table__.delete())
    # dashboard_address=None still binds the dashboard's default port 8787: ":0" takes a free one
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        run_monitoring(monitored.database, OPERATOR, lake_root=monitored.lake_root,
                       store=open_store(monitored.settings.artifacts_root), model=MODEL, engine="dask",
                       scheduler=cluster.scheduler_address, now=DAY0 + timedelta(days=3, hours=1))
    assert stored() == local
