"""The synthetic hospital's scenarios replayed through the closed loop, day by day, at one hospital.

One five-site hospital with a scenario placed at each of four sites (``PLACES``; ``central`` is the
control) is generated and ingested into its own installation. The deterioration model is trained on
the rows before the change, under a change-control plan put in force by two approvers (a frozen
test set of the latest of those rows), approved by two, gated, and made champion at every site.
Then time is replayed as the in-server scheduler would meet it: the week before the change is
scored and monitored, and each day after it the day's index rows are scored in a batch run, the day
that just ended is monitored, each week when it ends and again once its labels have matured (the
48-hour horizon), and the alert rules (``scenario_rules.yaml``) are judged as of that day's end.
Labels come from the lake by the model's own definition, point-in-time at each day's end. The
retraining requests the alerts filed are carried out when the replay ends, on the data to its end,
and each candidate goes through its gate: a pass would be a shadow challenger, never a champion.

What each site's scenario is caught by is read back from the stored results (the first window each
metric flagged at each site) and from the alerts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select

from vitalops.artifacts import open_store
from vitalops.auth import SYSTEM, Principal
from vitalops.batch.scoring import score_batch
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.db.tables.monitoring import MonitoringResultRow
from vitalops.features import demo_spec_path
from vitalops.features.definitions import duration_us, load_spec
from vitalops.features.training_set import build_training_set
from vitalops.governance.approvals import approve_version
from vitalops.governance.deploy import deploy_version
from vitalops.governance.gate import record_full_review, run_pccp_check
from vitalops.governance.pccp import decide_pccp, propose_pccp
from vitalops.ingest.service import ingest_paths
from vitalops.monitoring.actions import MONITORING
from vitalops.monitoring.alert_rules import set_rules
from vitalops.monitoring.alerts import evaluate_after_run, list_alerts
from vitalops.monitoring.engine import run_monitoring
from vitalops.monitoring.retraining import run_retraining
from vitalops.serving.service import default_context
from vitalops.sites import create_site
from vitalops.synth import generate_hospital
from vitalops.synth.scenarios import Scenario
from vitalops.training.datasets import ResolvedDataset, freeze_dataset
from vitalops.training.spec import spec_from_dict
from vitalops.training.trainer import train_on_dataset

MODEL = "deterioration"
SITES = ("north", "south", "east", "west", "central")
#: Where each scenario happens; ``central`` changes nothing (the control).
PLACES = "unit-mislabel@north,unit-change@south,population-shift@east,protocol-change@west"
#: Simulated patients and their admission-rate multiplier: about 100-200 scored rows a site a day.
PATIENTS, ADMISSION_SCALE = 3000, 8.0
#: The simulated period; its midpoint, 2026-03-02, is when every scenario starts.
START, END = date(2026, 1, 31), date(2026, 4, 1)
#: Days before the change (scored in one batch run, then monitored day by day: the baseline) and
#: days after it (each scored and monitored in turn).
DAYS_BEFORE, DAYS_AFTER = 7, 12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Days the admission process runs before the period, so it opens in steady state.
WARMUP_DAYS = 60
#: Share of the first site's patients the canary (version 2) serves.
CANARY_PERCENT = 30
#: Share of the pre-change rows, the latest, kept as the plan's frozen test set.
FROZEN_SHARE = 0.25
#: Each scenario's alert rules: what a hospital would file for this model.
RULES = Path(__file__).with_name("scenario_rules.yaml")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Staff:
    """Who acts: the data scientist trains and proposes; two approvers decide; the operator monitors."""

    data_scientist: Principal
    approvers: tuple[Principal, Principal]
    operator: Principal


def _plan(uri: str, fingerprint: str) -> str:
    # The frozen set holds the deteriorations of about a week (a few dozen rows from some ten
    # patients): acceptance asks for better than chance with 95% confidence, site ratios are wide,
    # and subgroup ratios are left out (a sex or age group would hold two or three events; the
    # plan's small-group rule would only mark them not evaluable for the approvers to waive).
    return f"""model: {MODEL}
allowed_modifications: [retrain, recalibrate, threshold_change]
locked: [input_signature, intended_use, output_meaning]
frozen_test_set: {{uri: "{uri}", fingerprint: "{fingerprint}"}}
acceptance: {{auroc_low: 0.5}}
non_inferiority: {{auroc_drop_max: 0.03}}
behaviour: {{flag_rate_change_max: 0.1, decision_flip_max: 0.2, psi_max: 0.25, psi_bins: 10}}
subgroups: {{attributes: []}}
sites: {{metric: auroc, ratio_min: 0.5, ratio_max: 2.0, small_group_min: 30}}
retraining: {{shadow_days: 14}}
n_resamples: 100
seed: 7
"""


def _training_spec(*, C: float = 0.5) -> Any:  # noqa: N803 - scikit-learn's name
    from vitalops.training.demo import DEMO_MODELS, DEMO_PROFILES

    return spec_from_dict({
        "model": {"name": MODEL, **DEMO_MODELS[MODEL], "approvals_required": 2, "profile": DEMO_PROFILES[MODEL]},
        "dataset": {"uri": "scenario:prebuilt"},
        "estimator": "logistic_regression",
        "hyperparameters": {"C": C},
        "split": {"train_fraction": 0.7},
        "seed": 7,
        "threshold": {"kind": "sensitivity", "value": 0.8},
        "validation": {"n_resamples": 100},
    }, source=f"scenario training spec for {MODEL}")


def _before(table: pa.Table, moment: datetime) -> pa.ChunkedArray:
    return pc.less(table["index_time"], pa.scalar(moment, table.schema.field("index_time").type))


def replay_scenarios(database: Database, settings: Settings, staff: Staff, *, scenario: str = PLACES,
                     patients: int = PATIENTS, seed: int = 17, admission_scale: float = ADMISSION_SCALE,
                     progress: Progress | None = None) -> dict[str, Any]:
    """Generate, ingest, train, govern, deploy, then replay the days around the change (see the
    module docstring) in the installation of ``settings``, which should hold nothing else; the
    sites ``SITES`` are registered here. Returns a summary: the version deployed, the days
    replayed, per window length each metric's first flagged window per site, the alerts, and the
    retraining requests with their gate outcome."""
    note = progress or (lambda _message: None)
    home = settings.home
    with database.session() as session:
        for site in SITES:
            create_site(session, SYSTEM, site)
    note("generating the hospital")
    hospital = generate_hospital(home / "hospital", patients=patients, sites=list(SITES), seed=seed,
                                 scenario=scenario, start=START, end=END,
                                 admission_scale=admission_scale, warmup_days=WARMUP_DAYS)
    change = datetime.fromisoformat(f"{hospital.change_date}T00:00:00+00:00")
    note("ingesting")
    ingest_paths(database, staff.data_scientist, [home / "hospital"], lake_root=settings.lake_root)
    note("building the training set")
    definitions = load_spec(demo_spec_path(MODEL))
    built = build_training_set(definitions, settings.lake_root)
    horizon = timedelta(microseconds=duration_us(definitions.label.horizon))
    version = _train_and_deploy(database, settings, built, change, staff, note)
    set_rules(database, staff.operator, MODEL, RULES.read_text(encoding="utf-8"))
    rows = built.table
    runtime = default_context(settings).runtime
    baseline = change - timedelta(days=DAYS_BEFORE)
    note(f"the {DAYS_BEFORE} days before the change")
    _score(database, settings, staff, runtime, rows, baseline, change)
    for offset in range(DAYS_BEFORE - 1, -1, -1):
        _monitor(database, settings, change - timedelta(days=offset), horizon)
    days = [change + timedelta(days=offset) for offset in range(DAYS_AFTER)]
    for number, day in enumerate(days):
        note(f"day {number + 1} of {len(days)} after the change")
        _score(database, settings, staff, runtime, rows, day, day + timedelta(days=1))
        _monitor(database, settings, day + timedelta(days=1), horizon)
    note("retraining what the alerts asked for")
    retraining = run_retraining(database, MONITORING, model=MODEL, settings=settings,
                                now=days[-1] + timedelta(days=1))
    return {
        "scenario": scenario,
        "change_date": hospital.change_date,
        "version": version,
        "sites": _placed(scenario),
        "replayed": {"since": baseline.date().isoformat(),
                     "until": (days[-1] + timedelta(days=1)).date().isoformat()},
        "first_flagged": (flagged := first_flagged(database)),
        "caught": caught_by_site(flagged, change),
        "alerts": [alert.model_dump(mode="json") for alert in list_alerts(database, staff.operator, model=MODEL)],
        "retraining": [request.model_dump(mode="json") for request in retraining],
    }


def _train_and_deploy(database: Database, settings: Settings, built: Any, change: datetime, staff: Staff,
                      note: Progress) -> int:
    """Version 1 trained on the rows before ``change``, its plan and approvals, champion at every site."""
    table = built.table.filter(_before(built.table, change))
    times = np.sort(pc.cast(table["index_time"], pa.int64()).to_numpy())
    cut = pa.scalar(int(times[int((1 - FROZEN_SHARE) * (len(times) - 1))]), pa.int64())
    later = pc.greater_equal(pc.cast(table["index_time"], pa.int64()), cut)
    store = open_store(settings.artifacts_root)
    frozen_uri, frozen_fingerprint = freeze_dataset(store, table.filter(later))
    development = ResolvedDataset(table.filter(pc.invert(later)), list(built.feature_names),
                                  built.fingerprint.content_sha256, str(built.spec.version), None, built.spec)
    note("training deterioration v1 on the rows before the change")
    trained = train_on_dataset(database, staff.data_scientist, _training_spec(), development)
    number = trained.version.number
    plan = propose_pccp(database, staff.data_scientist, MODEL, _plan(frozen_uri, frozen_fingerprint))
    for approver in staff.approvers:
        decide_pccp(database, approver, MODEL, plan.number, decision="approve",
                    reason="plan reviewed: frozen test set of the latest pre-change rows, locked inputs")
    for approver in staff.approvers:
        approve_version(database, approver, MODEL, number, reason="validation report reviewed for the replay")
    _gate(database, staff, number)
    deploy_version(database, staff.approvers[0], MODEL, number, sites=list(SITES), mode="champion",
                   reason="champion for the scenario replay, after two approvals and the gate")
    note("training deterioration v2 (stronger regularization) as a canary at the first site")
    challenger = train_on_dataset(database, staff.data_scientist, _training_spec(C=0.1), development)
    for approver in staff.approvers:
        approve_version(database, approver, MODEL, challenger.version.number,
                        reason="validation report reviewed: a canary beside the champion")
    _gate(database, staff, challenger.version.number)
    deploy_version(database, staff.approvers[0], MODEL, challenger.version.number, sites=[SITES[0]],
                   mode=f"canary:{CANARY_PERCENT}", reason="a canary beside the champion, after its gate")
    return number


def _gate(database: Database, staff: Staff, number: int) -> None:
    """The version's PCCP check; when it is incomplete only (nothing failed), both approvers record
    a full review waiving what could not be evaluated. A failed check stays failed: the deployment
    that follows is refused."""
    check = run_pccp_check(database, staff.approvers[0], MODEL, number)
    if check.status == "incomplete":
        for approver in staff.approvers:
            record_full_review(database, approver, MODEL, number,
                               waives=[criterion.name for criterion in check.not_evaluable],
                               reason="criteria not evaluable on the frozen set are followed in monitoring")


def _score(database: Database, settings: Settings, staff: Staff, runtime: Any, rows: pa.Table, since: datetime,
           until: datetime) -> None:
    """The index rows in ``[since, until)`` scored in one batch run by the versions deployed at each site."""
    moment_type = rows.schema.field("index_time").type
    within = pc.and_(pc.greater_equal(rows["index_time"], pa.scalar(since, moment_type)),
                     pc.less(rows["index_time"], pa.scalar(until, moment_type)))
    today = rows.filter(within)
    if today.num_rows == 0:
        return
    folder = settings.home / "replay"
    folder.mkdir(exist_ok=True)
    stem = f"{since.date().isoformat()}-{until.date().isoformat()}"
    path = folder / f"rows-{stem}.parquet"
    pq.write_table(today.drop_columns([c for c in ("label", "label_known_at") if c in today.column_names]), path)
    score_batch(database, staff.data_scientist, MODEL, str(folder / f"scored-{stem}"),
                lake_root=settings.lake_root, runtime=runtime, input_uri=str(path))


def _monitor(database: Database, settings: Settings, now: datetime, horizon: timedelta) -> None:
    """What the scheduler does at ``now``, daily: the day that just ended is monitored; a week is
    monitored when it ends and again once its labels have matured (``horizon`` later); then the
    rules are judged."""
    ranges = [(timedelta(days=1), now - timedelta(days=1), now)]
    week = timedelta(days=7)
    week_end = _EPOCH + (now - _EPOCH) // week * week
    if now - week_end in (timedelta(0), horizon):
        ranges.append((week, week_end - week, week_end))
    for window, since, until in ranges:
        summary = run_monitoring(database, MONITORING, lake_root=settings.lake_root,
                                 store=open_store(settings.artifacts_root), model=MODEL, window=window,
                                 since=since, until=until, now=now)
        evaluate_after_run(database, MONITORING, summary, settings=settings, now=now)


def _placed(scenario: str) -> dict[str, str | None]:
    """The scenario each site has (None: unchanged), as the generator places them."""
    places = Scenario.choose(scenario, START, END, list(SITES)).places(SITES)
    return {site: ", ".join(names) or None for site, names in places.items()}


#: The metric families a site's row of the summary lists. Site outliers and the duplicate views of
#: one drift (Wasserstein, Evidently's rule) are left to ``first_flagged``, and so are performance
#: and calibration: a site has 5 to 15 deteriorating patients a week here, too few to judge them on
#: (they flag at the control site as often as elsewhere).
_CAUGHT = ("quality.", "input_drift.psi/", "input_drift.missing_rate/", "prediction_drift.")


def caught_by_site(flagged: dict[str, dict[str, dict[str, str]]], change: datetime
                   ) -> dict[str, list[dict[str, Any]]]:
    """Per site: each metric it was flagged on (of ``_CAUGHT``), with the window length, the first
    window's date and whether that window ended by the change (an alarm the scenario does not
    explain; a week that holds the change day is not one)."""
    by_site: dict[str, list[dict[str, Any]]] = {site: [] for site in SITES}
    for length, metrics in flagged.items():
        for metric_id, sites in metrics.items():
            if not metric_id.startswith(_CAUGHT):
                continue
            for site, first in sites.items():
                ended = date.fromisoformat(first) + timedelta(days=int(length.removesuffix("d")))
                by_site.setdefault(site, []).append({"metric": metric_id, "window": length, "first": first,
                                                     "before_change": ended <= change.date()})
    return {site: sorted(rows, key=lambda r: (r["first"], r["window"], r["metric"])) for site, rows in by_site.items()}


def first_flagged(database: Database) -> dict[str, dict[str, dict[str, str]]]:
    """Per window length (``1d``, ``7d``), metric id and site: the start date of the first window
    it was flagged in."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    with database.read_session() as session:
        for metric_id, site, start, end in session.execute(
                select(MonitoringResultRow.metric_id, MonitoringResultRow.site, MonitoringResultRow.window_start,
                       MonitoringResultRow.window_end)
                .where(MonitoringResultRow.status == "flagged").order_by(MonitoringResultRow.window_start)):
            length = f"{(end - start).days}d"
            found.setdefault(length, {}).setdefault(metric_id, {}).setdefault(site, start.date().isoformat())
    return found
