"""Alert-triggered retraining on SQLite and PostgreSQL: a deterioration model trained on the small
synthetic hospital, champion at two sites under a plan in force; a rule whose action is ``retrain``
fires at one site; the request is carried out (fresh data from the lake, a registered candidate, its
PCCP check) and ends as a shadow challenger, as a governance review with a critical alert, or refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.conftest import bearer
from tests.features.conftest import HospitalLake, demo_sets, hospital_lake  # noqa: F401 - fixtures
from tests.governance.plans import ALICE, SCIENTIST, plan_in_force, register_sites
from vitalops.artifacts import open_store
from vitalops.audit import list_events, verify_chain
from vitalops.auth import Principal, Role
from vitalops.core.settings import get_settings
from vitalops.errors import PermissionDenied
from vitalops.features import TrainingSet
from vitalops.governance.deploy import deploy_version
from vitalops.monitoring import retraining
from vitalops.monitoring.alert_rules import set_rules
from vitalops.monitoring.alerts import evaluate_alerts, get_alert, resolve_alert
from vitalops.monitoring.incidents import list_incidents
from vitalops.monitoring.notifiers import LogNotifier
from vitalops.monitoring.results import MetricResult, upsert
from vitalops.monitoring.retraining import LEASE, RETRAINING, run_retraining
from vitalops.monitoring.retraining_requests import list_retraining_requests
from vitalops.registry.deployments import apply_deployment, list_deployment_events, list_deployments, parse_mode
from vitalops.registry.versions import list_versions
from vitalops.training.datasets import ResolvedDataset, freeze_dataset
from vitalops.training.spec import spec_from_dict
from vitalops.training.trainer import train_on_dataset

MODEL = "deterioration"
OPERATOR = Principal(name="otto", roles=frozenset({Role.OPERATOR}))
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
NOW = DAY0 + timedelta(days=3, hours=1)
SHADOW_DAYS = 10
RULES = """
rules:
  - id: score-drift
    metric: prediction_drift.score_psi
    window: 1d
    comparison: ">="
    threshold: 0.2
    min_n: 10
    severity: warning
    action: retrain
  - id: flag-rate
    metric: prediction_drift.flag_rate
    window: 1d
    comparison: ">="
    threshold: 0.1
    min_n: 10
    action: retrain
"""


def _plan(uri: str, fingerprint: str, *, allowed: str = "[retrain]", acceptance: str = "{}") -> str:
    # Bounds this small hospital can judge (about 25 outcomes in the frozen set); the fail path asks
    # for an AUROC no model reaches.
    return f"""model: {MODEL}
allowed_modifications: {allowed}
frozen_test_set: {{uri: "{uri}", fingerprint: "{fingerprint}"}}
acceptance: {acceptance}
non_inferiority: {{auroc_drop_max: 0.5}}
behaviour: {{flag_rate_change_max: 1.0, decision_flip_max: 1.0, psi_max: 100, psi_bins: 10}}
subgroups: {{attributes: []}}
sites: {{metric: auroc, ratio_min: 0.01, ratio_max: 100, small_group_min: 1}}
retraining: {{shadow_days: {SHADOW_DAYS}}}
n_resamples: 20
seed: 3
"""


class Hospital:
    def __init__(self, database, settings, frozen: tuple[str, str]) -> None:
        self.database, self.settings, self.frozen = database, settings, frozen

    def plan(self, **changes: str) -> None:
        plan_in_force(self.database, MODEL, _plan(*self.frozen, **changes), approvers=(ALICE,))

    def alert(self, rule_metric: str = "prediction_drift.score_psi", site: str = "north", day: int = 2):
        with self.database.session() as session:
            upsert(session, [MetricResult(metric_id=rule_metric, model=MODEL, version=1, site=site,
                                          window_start=DAY0 + timedelta(days=day),
                                          window_end=DAY0 + timedelta(days=day + 1), value=0.6, n=500,
                                          status="ok", details={"test": "seeded"})], run_id="seeded", computed_at=NOW)
        return evaluate_alerts(self.database, OPERATOR, MODEL, now=NOW, notifiers=[LogNotifier()])

    def run(self, now: datetime = NOW):
        return run_retraining(self.database, OPERATOR, settings=self.settings, now=now, notifiers=[LogNotifier()])

    def requests(self):
        return list_retraining_requests(self.database, OPERATOR, model=MODEL)

    def versions(self):
        with self.database.read_session() as session:
            return list_versions(session, MODEL)

    def slots(self):
        with self.database.read_session() as session:
            return {(s.site, s.slot): s for s in list_deployments(session, MODEL) if s.version is not None}


def _later(table: pa.Table, share: float) -> pa.ChunkedArray:
    times = table.column("index_time").cast(pa.timestamp("us", tz="UTC"))
    cut = pc.quantile(pc.cast(times, pa.int64()), q=1.0 - share)[0].as_py()
    return pc.greater_equal(pc.cast(times, pa.int64()), pa.scalar(int(cut), pa.int64()))


@pytest.fixture
def hospital(database, settings, monkeypatch, hospital_lake: HospitalLake,  # noqa: F811
             demo_sets: dict[str, TrainingSet]) -> Hospital:  # noqa: F811
    """v1 trained on the earliest three fifths (the latest fifth is the plan's frozen test set, so fresh
    data adds the fifth between), champion at north and south, its alert rules filed; the lake is the
    synthetic hospital's (read only)."""
    monkeypatch.setenv("VITALOPS_LAKE_URI", hospital_lake.lake_root)
    get_settings.cache_clear()
    settings = get_settings()
    built = demo_sets[MODEL]
    later = _later(built.table, 0.2)
    frozen = freeze_dataset(open_store(settings.artifacts_root), built.table.filter(later))
    earlier = pc.invert(_later(built.table, 0.4))
    development = ResolvedDataset(built.table.filter(earlier), list(built.feature_names),
                                  built.fingerprint.content_sha256, built.spec.version, None, definitions=built.spec)
    spec = spec_from_dict({
        "model": {"name": MODEL, "intended_use": "early warning of deterioration", "clinical_owner": "ward",
                  "target_population": "adult inpatients", "approvals_required": 1},
        "dataset": {"uri": "test:prebuilt"}, "estimator": "logistic_regression", "hyperparameters": {"C": 0.5},
        "split": {"train_fraction": 0.7, "external_sites": []}, "seed": 7,
        "threshold": {"kind": "sensitivity", "value": 0.8}, "validation": {"n_resamples": 20},
    }, source="test spec")
    register_sites(database, "north", "south")
    first = train_on_dataset(database, SCIENTIST, spec, development)
    assert first.version.state == "validated" and first.version.lineage["training_spec"]["seed"] == 7
    with database.session() as session:
        for site in ("north", "south"):
            apply_deployment(session, actor=ALICE, name=MODEL, number=1, site=site, mode=parse_mode("champion"),
                             reason="test")
    set_rules(database, OPERATOR, MODEL, RULES)
    return Hospital(database, settings, frozen)


def _model_events(database) -> list:
    with database.read_session() as session:
        return list_events(session, object_type="model", object_id=MODEL, limit=10_000)


def test_a_passing_candidate_runs_as_a_shadow_at_the_alert_site_and_is_never_champion(hospital):
    hospital.plan()
    evaluated = hospital.alert()
    alert = get_alert(hospital.database, OPERATOR, evaluated["opened"][0])
    assert alert["action_outcome"] == "retrain_requested"
    [pending] = hospital.requests()
    assert pending.state == "pending" and pending.base_version == 1 and pending.site == "north"

    [ran] = hospital.run()
    assert ran.id == pending.id and ran.state == "shadow" and ran.check_status == "passed"
    assert ran.candidate_version == 2 and ran.shadow_until == NOW + timedelta(days=SHADOW_DAYS)
    candidate = hospital.versions()[-1]
    assert candidate.number == 2 and candidate.submitter == RETRAINING.name and candidate.source == "trained"
    assert candidate.lineage["retrained_from"]["version"] == 1
    assert candidate.lineage["retrained_from"]["frozen_rows_left_out"] > 0  # never learns its judges' rows
    assert candidate.lineage["training_spec"]["split"] == {"train_fraction": 0.7, "train_before": None,
                                                           "external_sites": []}
    # The fresh rows are the lake's current facts with v1's definitions: more rows than v1 learned from.
    assert candidate.lineage["training_rows"] > hospital.versions()[0].lineage["training_rows"]
    assert candidate.definitions_version == hospital.versions()[0].definitions_version
    assert candidate.dataset_fingerprint != hospital.versions()[0].dataset_fingerprint

    slots = hospital.slots()
    assert slots[("north", "challenger")].version == 2 and slots[("north", "challenger")].mode == "shadow"
    assert slots[("north", "challenger")].ends_at == NOW + timedelta(days=SHADOW_DAYS)
    assert slots[("north", "champion")].version == 1 and slots[("south", "champion")].version == 1
    assert ("south", "challenger") not in slots
    assert candidate.state == "validated"  # never approved by anyone: promotion is an approver's
    with pytest.raises(PermissionDenied):  # the retraining principal can never promote
        deploy_version(hospital.database, RETRAINING, MODEL, 2, sites=["north"], mode="champion")
    actions = [e.action for e in _model_events(hospital.database)]
    for step in ("model.retrain_requested", "retraining.started", "retraining.candidate_registered",
                 "retraining.checked", "retraining.shadow_deployed", "deployment.deploy"):
        assert step in actions

    # A rerun changes nothing: the request is finished, no version or deployment is added.
    events_before = len(_model_events(hospital.database))
    assert hospital.run(NOW + 2 * LEASE) == []
    assert len(hospital.versions()) == 2 and len(_model_events(hospital.database)) == events_before
    assert verify_chain(hospital.database.engine).ok


def test_a_failing_candidate_is_put_to_governance_with_its_failed_criteria(hospital, demo_sets):  # noqa: F811
    hospital.plan(acceptance="{auroc_low: 0.999}")
    hospital.alert()
    [ran] = hospital.run()
    assert ran.state == "gate_failed" and ran.check_status == "failed"
    assert "acceptance.auroc_low" in ran.failed_criteria
    assert ("north", "challenger") not in hospital.slots()  # nothing deployed
    assert hospital.slots()[("north", "champion")].version == 1

    incident = next(i for i in list_incidents(hospital.database, OPERATOR, model=MODEL) if i.id == ran.incident)
    assert incident.kind == "review" and incident.state == "open" and "acceptance.auroc_low" in incident.title
    raised = get_alert(hospital.database, OPERATOR, ran.outcome_alert)
    assert raised["severity"] == "critical" and raised["metric"] == "retraining.pccp_check"
    assert raised["version"] == ran.candidate_version and raised["incident"] == incident.id
    assert raised["deliveries"] and raised["deliveries"][0]["outcome"] == "delivered"
    # No patient's key or value reaches the alert, the incident or the request.
    shown = orjson.dumps([raised, incident.model_dump(mode="json"), ran.model_dump(mode="json")]).decode()
    keys = set(demo_sets[MODEL].table.column("patient_key").to_pylist())
    assert keys and not any(key in shown for key in keys)


def test_a_plan_that_does_not_allow_retraining_refuses_it(hospital, cli, api_client, make_user):
    hospital.plan(allowed="[recalibrate]")
    evaluated = hospital.alert()
    alert = get_alert(hospital.database, OPERATOR, evaluated["opened"][0])
    assert alert["action_outcome"] == "retrain_refused" and alert["incident"] is not None
    [refused] = hospital.requests()
    assert refused.state == "refused" and "does not allow retraining" in (refused.reason or "")
    assert refused.incident == alert["incident"]
    assert hospital.run() == [] and len(hospital.versions()) == 1

    listed = cli("monitor", "retraining", "--model", MODEL, "--json")
    assert listed.exit_code == 0 and listed.json()["requests"][0]["id"] == refused.id
    assert cli("monitor", "retrain", "--json").json() == {"ran": 0, "requests": []}
    _, auditor = make_user("auditor", "audrey")
    response = api_client.get("/v1/monitoring/retraining", params={"model": MODEL}, headers=bearer(auditor))
    assert response.status_code == 200
    assert [(r["id"], r["state"]) for r in response.json()["requests"]] == [(refused.id, "refused")]
    one = api_client.get(f"/v1/monitoring/retraining/{refused.id}", headers=bearer(auditor))
    assert one.json()["incident"] == refused.incident
    assert api_client.get("/v1/monitoring/retraining/999999", headers=bearer(auditor)).status_code == 404


def test_requests_are_deduplicated_per_model_while_one_is_pending(hospital):
    hospital.plan()
    first = hospital.alert()
    second = hospital.alert("prediction_drift.flag_rate", site="south")
    assert len(first["opened"]) == 1 and len(second["opened"]) == 1
    assert get_alert(hospital.database, OPERATOR, second["opened"][0])["action_outcome"] == "retrain_pending"
    [request] = hospital.requests()
    assert request.alerts == 2 and request.site == "north"

    # The plan changes before it runs: the pending request is refused then, and a new alert asks anew.
    hospital.plan(allowed="[threshold_change]")
    [ran] = hospital.run()
    assert ran.state == "refused" and ran.candidate_version is None and len(hospital.versions()) == 1
    hospital.plan()
    for alert_id in first["opened"] + second["opened"]:  # resolved: a new breach opens a new alert
        resolve_alert(hospital.database, OPERATOR, alert_id, reason="retraining refused; the plan is back")
    hospital.alert(day=2)
    assert [r.state for r in hospital.requests()] == ["pending", "refused"]


class WorkerDied(BaseException):
    """The process running a request stops between two of its steps."""


def test_a_crash_midway_is_resumed_without_a_second_candidate(hospital, monkeypatch):
    hospital.plan()
    hospital.alert()

    def die(*_args, **_kwargs):
        raise WorkerDied

    with monkeypatch.context() as patched:
        patched.setattr(retraining, "run_pccp_check", die)
        with pytest.raises(WorkerDied):
            hospital.run()
    [held] = hospital.requests()
    assert held.state == "running" and held.candidate_version == 2 and held.check_id is None
    assert hospital.run(NOW + timedelta(minutes=5)) == []  # its lease still holds it

    [resumed] = hospital.run(NOW + LEASE + timedelta(minutes=1))
    assert resumed.id == held.id and resumed.state == "shadow" and resumed.attempts == 2
    assert [v.number for v in hospital.versions()] == [1, 2]  # the registered candidate was reused
    with hospital.database.read_session() as session:
        shadows = [e for e in list_deployment_events(session, MODEL, site="north") if e.mode == "shadow"]
    assert len(shadows) == 1 and shadows[0].version == 2
    assert hospital.run(NOW + 3 * LEASE) == []
