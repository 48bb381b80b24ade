"""The scenario replay end to end (``vitalops scenarios``): a five-site hospital, a scenario at four
sites and a control, the model trained before the change and gated, then two weeks replayed day by
day through scoring, monitoring, alerts and retraining. Each site's scenario is caught by the
metric meant for it, at that site, and the control site raises nothing; the retraining candidate
an alert asked for goes through the gate and is refused, never deployed.

What the replay cannot show at this size is asserted as such: the protocol change at west moves no
input or score distribution (the warning signs before a deterioration are blunted, the population
is not), and the few deteriorations a site has in a week (5 to 15 patients) are too few to judge
measured performance on."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from tests.governance.plans import ALICE, BOB, SCIENTIST
from tests.monitoring.conftest import OPERATOR
from vitalops.cli.scenarios_cmd import render_replay
from vitalops.core.settings import get_settings
from vitalops.db.tables.registry import ModelRow, ModelVersionRow
from vitalops.monitoring.results import read_results
from vitalops.monitoring.scenario_replay import MODEL, SITES, Staff, replay_scenarios
from vitalops.registry.deployments import list_deployment_events, list_deployments

ONE_BACKEND = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def _caught(result: dict, site: str, *, window: str | None = None) -> dict[str, str]:
    return {c["metric"]: c["first"] for c in result["caught"][site] if window is None or c["window"] == window}


@ONE_BACKEND
@pytest.mark.timeout(900)
def test_each_scenario_is_caught_at_its_site_and_the_retraining_candidate_is_gated(database, settings, monkeypatch):
    # A fixed pseudonym key: patient keys order the rows a model is fitted on and the patients a
    # bootstrap resamples, so the same key gives the same replay on every run.
    monkeypatch.setenv("VITALOPS_PSEUDONYM_KEY", "scenario-replay-test-pseudonym-key-0001")
    get_settings.cache_clear()
    settings = get_settings()
    result = replay_scenarios(database, settings, Staff(SCIENTIST, (ALICE, BOB), OPERATOR))
    check_replay(result, database)
    render_replay(result)  # the table people read renders from the same summary


def _daily(database, metric: str, site: str) -> dict[date, float]:
    with database.session() as session:
        return {r.window_start.date(): r.value for r in read_results(session, model=MODEL, metric_id=metric)
                if r.site == site and r.window_end - r.window_start == timedelta(days=1) and r.value is not None}


def _weekly(database, metric: str, site: str) -> dict[date, float]:
    with database.session() as session:
        return {r.window_start.date(): r.value for r in read_results(session, model=MODEL, metric_id=metric)
                if r.site == site and r.window_end - r.window_start == timedelta(days=7) and r.value is not None}


def check_replay(result: dict, database) -> None:
    """What the replay must show (see the module docstring)."""
    change = result["change_date"]
    assert change == "2026-03-02" and result["sites"] == {
        "north": "unit-mislabel", "south": "unit-change", "east": "population-shift", "west": "protocol-change",
        "central": None}
    alerts: dict[str, set[str]] = {site: set() for site in SITES}
    for alert in result["alerts"]:
        alerts[alert["site"]].add(alert["rule"])

    # north, creatinine in umol/L labelled mg/dL: out of range and drifting on the day it starts
    north = _caught(result, "north", window="1d")
    assert north["quality.out_of_range_rate/creatinine"] == change
    assert north["input_drift.psi/creatinine_last"] == change
    assert north["prediction_drift.score_psi"] == change  # every score is pushed up: the model sees it
    assert {"implausible-values", "input-drift-daily", "score-drift-weekly"} <= alerts["north"]

    # south, creatinine in umol/L labelled so: converted, so the unit mix shows it and nothing drifts
    south = _caught(result, "south")
    units = _daily(database, "quality.unit_mix/creatinine", "south")
    assert units[date.fromisoformat(change)] == 1.0 and units[date.fromisoformat(change) - timedelta(days=1)] == 0.0
    assert not any("creatinine" in metric for metric in south)
    assert "creatinine-unit-changed" in alerts["south"] and "implausible-values" not in alerts["south"]
    assert all(rule == "creatinine-unit-changed" for site in SITES if site != "south"
               for rule in alerts[site] if rule.startswith("creatinine"))

    # east, older and sicker admissions: its inputs and scores drift once the census has turned over
    east = _caught(result, "east", window="1d")
    drifted = {metric: first for metric, first in east.items() if metric.startswith("input_drift.psi/")}
    assert drifted and all(first > change for first in drifted.values())
    assert east["prediction_drift.score_psi"] > change
    # by the second week the new admissions dominate: east's flag rate and fever drift are its
    # highest, and above the control's in the same week
    for metric in ("prediction_drift.flag_rate", "input_drift.psi/temperature_max_24h"):
        east_weeks, central_weeks = _weekly(database, metric, "east"), _weekly(database, metric, "central")
        second = max(east_weeks)
        assert second > date.fromisoformat(change), metric
        assert east_weeks[second] > max(v for week, v in east_weeks.items() if week < second), metric
        assert east_weeks[second] > central_weeks[second], metric
    assert "input-drift-daily" in alerts["east"]

    # west, the warning signs blunted: no input or score distribution moves, so nothing is raised
    west = _caught(result, "west")
    assert not any(metric.startswith(("input_drift.psi/lactate", "prediction_drift.")) for metric in west)
    assert not alerts["west"] & {"input-drift-daily", "input-drift-weekly", "score-drift-daily", "score-drift-weekly"}

    # north's canary (version 2, 30% of its patients): its scores moved with the feed, so it is rolled
    # back by the rule that says so, with the evidence; the champion it sits beside is kept
    rollbacks = [a for a in result["alerts"] if a["rule"] == "canary-score-drift" and a["site"] == "north"]
    assert {(a["version"], a["action_outcome"]) for a in rollbacks} >= {(2, "rolled_back")}
    assert all(a["action_outcome"] == "champion_kept" for a in rollbacks if a["version"] == result["version"])
    with database.session() as session:
        events = list_deployment_events(session, MODEL, site="north")
    assert any(e.version == 2 and e.mode.startswith("canary") for e in events)
    assert events[-1].actor == "system:monitoring" and "automatic rollback" in events[-1].reason

    # central, the control: no rule fires
    assert alerts["central"] == set()

    # the retraining north's score drift asked for: trained on the mislabelled feed, refused by its gate
    (request,) = result["retraining"]
    assert request["site"] == "north" and request["state"] == "gate_failed"
    assert {"behaviour.score_psi", "behaviour.flag_rate_change"} <= set(request["failed_criteria"])
    assert request["incident"] is not None and request["shadow_until"] is None
    with database.session() as session:
        model_id = session.scalar(select(ModelRow.id).where(ModelRow.name == MODEL))
        states = dict(session.execute(select(ModelVersionRow.number, ModelVersionRow.state)
                                      .where(ModelVersionRow.model_id == model_id)).all())
        deployed = {(slot.site, slot.version) for slot in list_deployments(session, MODEL) if slot.version}
    assert states[request["candidate_version"]] not in ("approved",)  # nobody approved it: the gate said no
    assert deployed == {(site, result["version"]) for site in SITES}  # the champion only, nowhere a v2
