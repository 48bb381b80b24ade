"""The synthetic hospital's scenarios, generated, ingested and monitored end to end: each is caught by
the metric that should catch it, at the site where it happens, and not elsewhere.

The hospital is small (two sites, a 60-day period, the change on its midpoint ``DAY0``) but holds
enough inpatients that each site has the 20 creatinine results a day a data-quality rate needs. What
is ingested is the feed of the days monitored: the export's Observations effective in them.

Input drift needs predictions whose features come from those facts: the fixture's model scores each
patient by key every few hours of the change day. Its reference is the fixture's training set, not
this hospital, so the other site's creatinine drifts against it too (less); the tests assert only
what that reference can show."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest

from tests.monitoring.conftest import CLINICIAN, DAY0, MODEL, OPERATOR, SITES, Monitored
from vitalops.artifacts import open_store
from vitalops.auth import SYSTEM
from vitalops.ingest.service import ingest_paths
from vitalops.lake.facts import FactsStore
from vitalops.monitoring.engine import OUT_OF_RANGE_MAX, run_monitoring
from vitalops.monitoring.results import MetricResult, read_results
from vitalops.serving import PredictionRequest, predict
from vitalops.synth import generate_hospital

#: Patients over the two sites: about 25 creatinine results a day at each.
PATIENTS = 4000
#: The period's midpoint, where every scenario starts, is ``DAY0`` (2026-03-02).
START, END = date(2026, 1, 31), date(2026, 4, 1)
CREATININE_RATE = "quality.out_of_range_rate/creatinine"
CREATININE_DRIFT = "input_drift.psi/creatinine_last"
CREATININE_UNITS = "quality.unit_mix/creatinine"
#: Hours between the predictions made for each patient from the lake (enough rows for input drift).
SCORED_EVERY_HOURS = 3
#: The windows monitored: the day before the change and the day it starts.
SINCE, UNTIL = DAY0 - timedelta(days=1), DAY0 + timedelta(days=1)


def _feed(export: Path, out: Path) -> Path:
    """The export's Observations effective in ``[SINCE, UNTIL)``, as one NDJSON file."""
    with (export / "Observation.ndjson").open("rb") as lines, out.open("wb") as feed:
        for line in lines:
            effective = datetime.fromisoformat(orjson.loads(line)["effectiveDateTime"])
            if SINCE <= effective < UNTIL:
                feed.write(line)
    return out


#: The data, not the database, is under test here: one backend keeps these quick.
ONE_BACKEND = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def _predict_from_lake(monitored: Monitored) -> None:
    """Score every patient with a creatinine result on the change day, every few hours of that day,
    by patient key: the features come from the patient's ingested facts."""
    facts = (
        FactsStore(monitored.lake_root)
        .dataset()
        .to_table(columns=["patient_key", "site", "effective_at"], filter=pc.field("concept") == "creatinine")
    )
    for site in SITES:
        keys = {f["patient_key"] for f in facts.to_pylist() if f["site"] == site and f["effective_at"] >= DAY0}
        for key in sorted(keys):
            for hour in range(1, 24, SCORED_EVERY_HOURS):
                request = PredictionRequest(site=site, patient_key=key, at=DAY0 + timedelta(hours=hour))
                predict(monitored.database, monitored.context, CLINICIAN, MODEL, request)


def _monitor(
    monitored: Monitored, tmp_path: Path, scenario: str, *, from_lake: bool = False
) -> dict[tuple[str, str, str], MetricResult]:
    """Generate the hospital with ``scenario``, ingest it, log predictions at each site (monitoring
    watches the sites a model serves: from the lake when ``from_lake``, else a few rows of the
    fixture's), run monitoring over the day before and the day of the change; return the creatinine
    results by (metric id, site, window start date)."""
    out = tmp_path / "hospital"
    summary = generate_hospital(
        out, patients=PATIENTS, sites=list(SITES), seed=17, scenario=scenario, start=START, end=END
    )
    assert summary.change_date == DAY0.date().isoformat()
    report = ingest_paths(monitored.database, SYSTEM, [_feed(out, tmp_path / "feed.ndjson")])
    assert report.read > 0 and report.quarantined == 0 and set(report.per_site) == set(SITES)
    if from_lake:
        _predict_from_lake(monitored)
    else:
        for site in SITES:
            monitored.score_day(tmp_path, site, 0, 5)
    run_monitoring(
        monitored.database,
        OPERATOR,
        lake_root=monitored.lake_root,
        store=open_store(monitored.settings.artifacts_root),
        model=MODEL,
        since=SINCE,
        until=UNTIL,
        now=DAY0 + timedelta(days=1, hours=2),
    )
    with monitored.database.session() as session:
        return {
            (metric, r.site, r.window_start.date().isoformat()): r
            for metric in (CREATININE_RATE, CREATININE_DRIFT, CREATININE_UNITS)
            for r in read_results(session, model=MODEL, metric_id=metric)
        }


@ONE_BACKEND
def test_unit_mislabel_flags_creatinine_at_that_site_on_the_day_it_starts(monitored, tmp_path):
    results = _monitor(monitored, tmp_path, "unit-mislabel", from_lake=True)
    before, change = (DAY0 - timedelta(days=1)).date().isoformat(), DAY0.date().isoformat()
    mislabelled, other = SITES
    rates = {key[1:]: r for key, r in results.items() if key[0] == CREATININE_RATE}
    for site in SITES:
        assert rates[(site, before)].status == "ok" and rates[(site, before)].value == 0.0
    assert rates[(mislabelled, change)].status == "flagged"
    assert rates[(mislabelled, change)].value > 0.9 and rates[(mislabelled, change)].n >= 20
    assert rates[(other, change)].status == "ok" and rates[(other, change)].value < OUT_OF_RANGE_MAX
    assert rates[(other, change)].n >= 20
    # Input drift flags the mislabelled site too. The other site's creatinine drifts as well, less:
    # the fixture model's reference is not drawn from this hospital, and a few patients scored every
    # few hours repeat their values, so only the mislabelled site's far larger shift is asserted.
    drift = {key[1:]: r for key, r in results.items() if key[0] == CREATININE_DRIFT}
    assert drift[(mislabelled, change)].status == "flagged" and drift[(mislabelled, change)].n >= 100
    assert drift[(mislabelled, change)].value > 2 * drift[(other, change)].value
    # The label says mg/dL, the canonical unit: the unit mix cannot see a wrong label.
    units = {key[1:]: r for key, r in results.items() if key[0] == CREATININE_UNITS}
    assert units[(mislabelled, change)].value == 0.0 and units[(mislabelled, change)].n >= 20


@ONE_BACKEND
def test_unit_change_labelled_correctly_is_converted_and_leaves_the_out_of_range_rate_alone(monitored, tmp_path):
    results = _monitor(monitored, tmp_path, "unit-change")
    rates = {key[1:]: r for key, r in results.items() if key[0] == CREATININE_RATE}
    change = DAY0.date().isoformat()
    with (tmp_path / "feed.ndjson").open("rb") as lines:
        sent = [orjson.loads(line) for line in lines]
    umol = [o for o in sent if o["code"]["coding"][0]["code"] == "2160-0" and o["valueQuantity"]["code"] == "umol/L"]
    assert len(umol) >= 20  # north did send umol/L (labelled so): the conversion is what keeps the rate at 0
    for site in SITES:
        assert rates[(site, change)].status == "ok" and rates[(site, change)].value == 0.0
        assert rates[(site, change)].n >= 20
    # The unit mix shows the change: north's creatinine now arrives in umol/L, south's still in mg/dL.
    units = {key[1:]: r for key, r in results.items() if key[0] == CREATININE_UNITS}
    before = (DAY0 - timedelta(days=1)).date().isoformat()
    north, south = SITES
    assert units[(north, before)].value == 0.0 and units[(south, before)].value == 0.0
    assert units[(north, change)].value == 1.0 and units[(north, change)].n >= 20
    assert units[(south, change)].value == 0.0
