"""Scenarios change the hospital from the change date, and only where they should."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.synth.synth_reading import code_of, moment, read_ndjson, site_of
from vitalops.errors import InvalidInput
from vitalops.synth import GROUND_TRUTH_FILE, SCENARIOS, generate_hospital
from vitalops.synth.scenarios import Scenario

SITES = ["north", "south", "east"]


def _stays(out: Path) -> list[dict[str, Any]]:
    return [r for r in read_ndjson(out / GROUND_TRUTH_FILE) if r["kind"] == "stay"]


def test_unknown_scenario_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        generate_hospital(tmp_path, patients=5, sites=["a"], seed=1, scenario="meteor-strike")
    for name in SCENARIOS:
        assert name in caught.value.message


def test_unit_change_switches_creatinine_to_umol_at_the_first_site_from_the_change_date(tmp_path: Path) -> None:
    summary = generate_hospital(tmp_path, patients=90, sites=SITES, seed=4, scenario="unit-change")
    assert summary.change_date == "2024-12-31"
    change_at = moment("2024-12-31T00:00:00+00:00")
    units: dict[tuple[str, bool], set[str]] = {}
    for observation in read_ndjson(tmp_path / "Observation.ndjson"):
        if code_of(observation) == "2160-0":
            after = moment(observation["effectiveDateTime"]) >= change_at
            quantity = observation["valueQuantity"]
            units.setdefault((site_of(observation), after), set()).add(quantity["code"])
            if quantity["code"] == "umol/L":
                assert 20 < quantity["value"] < 1500
    assert units[("north", False)] == {"mg/dL"} and units[("north", True)] == {"umol/L"}
    for site in ("south", "east"):
        assert units[(site, False)] == units[(site, True)] == {"mg/dL"}


def test_population_shift_brings_older_sicker_admissions_after_the_change(tmp_path: Path) -> None:
    generate_hospital(tmp_path / "base", patients=300, sites=SITES, seed=9)
    generate_hospital(tmp_path / "shift", patients=300, sites=SITES, seed=9, scenario="population-shift")
    change_at = moment("2024-12-31T00:00:00+00:00")

    def after_change(out: Path) -> list[dict[str, Any]]:
        return [s for s in _stays(out) if moment(s["admitted_at"]) >= change_at]

    base, shifted = after_change(tmp_path / "base"), after_change(tmp_path / "shift")
    assert all(s["population_shifted"] for s in shifted)
    assert not any(s["population_shifted"] for s in _stays(tmp_path / "base"))
    assert np.mean([s["age_at_admission"] for s in shifted]) > np.mean([s["age_at_admission"] for s in base]) + 1
    assert np.mean([s["deterioration_risk"] for s in shifted]) > 1.3 * np.mean([s["deterioration_risk"] for s in base])


def test_protocol_change_blunts_the_warning_signs_after_the_change(tmp_path: Path) -> None:
    generate_hospital(
        tmp_path,
        patients=300,
        sites=SITES,
        seed=13,
        scenario="protocol-change",
        start=date(2024, 1, 1),
        end=date(2025, 12, 31),
    )
    stays = {s["encounter_id"]: s for s in _stays(tmp_path)}
    first_lactate: dict[str, float] = {}
    heart_rates: dict[str, list[tuple[int, float]]] = {}
    for observation in read_ndjson(tmp_path / "Observation.ndjson"):
        encounter = observation["encounter"]["reference"].split("/")[1]
        if code_of(observation) == "2524-7" and encounter in stays and encounter not in first_lactate:
            first_lactate[encounter] = observation["valueQuantity"]["value"]
        if code_of(observation) == "8867-4" and encounter in stays:
            heart_rates.setdefault(encounter, []).append(
                (moment(observation["effectiveDateTime"]), observation["valueQuantity"]["value"]))
    change_at = moment("2024-12-31T00:00:00+00:00")

    def after(stay: dict[str, Any]) -> bool:
        return moment(stay["admitted_at"]) >= change_at

    def correlation(later: bool) -> float:
        pairs = [(stays[e]["severity"], np.log(v)) for e, v in first_lactate.items() if after(stays[e]) == later]
        assert len(pairs) > 60
        return float(np.corrcoef(np.array(pairs).T)[0, 1])

    def rise(later: bool) -> float:
        """Mean heart rate in the 6 hours before a deterioration minus that 30 to 48 hours before."""
        rises = []
        for encounter, stay in stays.items():
            if not stay["deteriorated"] or after(stay) != later or encounter not in heart_rates:
                continue
            event = moment(stay["event_at"])
            near = [v for t, v in heart_rates[encounter] if event - 6 * 3600 <= t < event]
            far = [v for t, v in heart_rates[encounter] if event - 48 * 3600 <= t < event - 30 * 3600]
            if near and far:
                rises.append(np.mean(near) - np.mean(far))
        assert len(rises) >= 5
        return float(np.mean(rises))

    assert correlation(later=False) > 0.25
    assert abs(correlation(later=True)) < 0.15
    # the heart rate still climbs before a deterioration, but far less once the protocol treats it
    assert rise(later=False) > 10 and rise(later=True) < 0.5 * rise(later=False)
    assert {(s["lactate_signal"], s["warning_signs"]) for s in stays.values() if after(s)} == {(0.0, 0.25)}
    assert {(s["lactate_signal"], s["warning_signs"]) for s in stays.values() if not after(s)} == {(1.0, 1.0)}


def test_unit_mislabel_sends_umol_values_under_mg_dl_at_the_first_site_and_changes_nothing_else(
    tmp_path: Path,
) -> None:
    period = {"patients": 400, "sites": SITES, "seed": 21, "start": date(2026, 1, 31), "end": date(2026, 4, 1)}
    generate_hospital(tmp_path / "base", **period)
    summary = generate_hospital(tmp_path / "mislabel", **period, scenario="unit-mislabel")
    generate_hospital(tmp_path / "again", **period, scenario="unit-mislabel")
    assert summary.scenario == "unit-mislabel" and summary.change_date == "2026-03-02"
    change_at = moment("2026-03-02T00:00:00+00:00")
    for name in summary.files:  # same seed, same bytes; only Observation differs from the run without it
        sent = (tmp_path / "mislabel" / name).read_bytes()
        assert sent == (tmp_path / "again" / name).read_bytes(), name
        if name != "Observation.ndjson":
            assert sent == (tmp_path / "base" / name).read_bytes(), name
    ratios: dict[tuple[str, bool], list[float]] = {}
    unchanged: dict[tuple[str, bool], int] = {}
    pairs = zip(
        read_ndjson(tmp_path / "base" / "Observation.ndjson"),
        read_ndjson(tmp_path / "mislabel" / "Observation.ndjson"),
        strict=True,
    )
    for base, mislabelled in pairs:
        site, after = site_of(base), moment(base["effectiveDateTime"]) >= change_at
        if code_of(base) != "2160-0" or site != "north" or not after:
            assert mislabelled == base  # other sites, other concepts, and north before the change
            if code_of(base) == "2160-0":
                assert base["valueQuantity"]["code"] == "mg/dL" and 0.2 < base["valueQuantity"]["value"] < 15
                unchanged[(site, after)] = unchanged.get((site, after), 0) + 1
            continue
        quantity = mislabelled["valueQuantity"]
        assert (quantity["unit"], quantity["code"]) == ("mg/dL", "mg/dL")  # the label says mg/dL
        assert quantity["system"] == "http://unitsofmeasure.org"
        assert quantity["value"] == round(quantity["value"]) and 20 < quantity["value"] < 1500  # umol/L numbers
        assert abs(quantity["value"] - 88.42 * base["valueQuantity"]["value"]) <= 1.0  # both rounded
        ratios.setdefault((site, after), []).append(quantity["value"] / base["valueQuantity"]["value"])
        assert {k: v for k, v in mislabelled.items() if k != "valueQuantity"} == {
            k: v for k, v in base.items() if k != "valueQuantity"
        }
    assert len(ratios[("north", True)]) > 50 and unchanged[("north", False)] > 50
    assert unchanged[("south", True)] > 10 and unchanged[("east", True)] > 10
    assert 87 < float(np.median(ratios[("north", True)])) < 90


def test_scenarios_placed_at_sites_change_only_those_sites(tmp_path: Path) -> None:
    period = {"patients": 240, "sites": SITES, "seed": 5, "start": date(2026, 1, 31), "end": date(2026, 4, 1)}
    summary = generate_hospital(tmp_path / "placed", **period,
                                scenario="unit-change@east,population-shift@south", admission_scale=4.0)
    assert summary.scenario == "unit-change@east,population-shift@south" and summary.change_date == "2026-03-02"
    change_at = moment("2026-03-02T00:00:00+00:00")
    units: dict[tuple[str, bool], set[str]] = {}
    for observation in read_ndjson(tmp_path / "placed" / "Observation.ndjson"):
        if code_of(observation) == "2160-0":
            after = moment(observation["effectiveDateTime"]) >= change_at
            units.setdefault((site_of(observation), after), set()).add(observation["valueQuantity"]["code"])
    assert units[("east", True)] == {"umol/L"} and units[("east", False)] == {"mg/dL"}
    assert units[("north", True)] == units[("south", True)] == {"mg/dL"}  # not the default first site
    shifted = {(s["site"], moment(s["admitted_at"]) >= change_at) for s in _stays(tmp_path / "placed")
               if s["population_shifted"]}
    assert shifted == {("south", True)}


def test_admission_scale_multiplies_inpatient_stays(tmp_path: Path) -> None:
    period = {"patients": 200, "sites": SITES, "seed": 8, "start": date(2026, 1, 31), "end": date(2026, 4, 1)}
    base = generate_hospital(tmp_path / "base", **period).ground_truth["inpatient_stays"]
    scaled = generate_hospital(tmp_path / "scaled", **period, admission_scale=6.0).ground_truth["inpatient_stays"]
    assert scaled > 4 * base > 0
    with pytest.raises(InvalidInput) as caught:
        generate_hospital(tmp_path / "bad", **period, admission_scale=0)
    assert caught.value.details["field"] == "admission_scale"


@pytest.mark.parametrize("scenario", ["unit-change@nowhere", "unit-change@north,unit-mislabel@north", "meteor@north"])
def test_a_scenario_placed_badly_is_refused(tmp_path: Path, scenario: str) -> None:
    with pytest.raises(InvalidInput):
        generate_hospital(tmp_path, patients=5, sites=SITES, seed=1, scenario=scenario)


def test_a_warm_up_opens_the_period_in_steady_state(tmp_path: Path) -> None:
    """Without a warm-up every patient's first admission falls in the period, and after it each waits
    out the readmission window: the first weeks are busier than the rest (about 1.4 times, with every
    seed tried). With one, the first and later weeks admit alike."""
    period = {"patients": 1500, "sites": ["north"], "seed": 3, "start": date(2026, 1, 31), "end": date(2026, 4, 1),
              "admission_scale": 8.0}

    def weekly(out: Path) -> np.ndarray:
        weeks: dict[int, int] = {}
        for stay in _stays(out):
            day = (date.fromisoformat(stay["admitted_at"][:10]) - date(2026, 1, 31)).days
            weeks[day // 7] = weeks.get(day // 7, 0) + 1
        return np.array([weeks[w] for w in range(8)])  # the whole weeks of the period

    generate_hospital(tmp_path / "cold", **period)
    generate_hospital(tmp_path / "warm", **period, warmup_days=120)
    cold, warm = weekly(tmp_path / "cold"), weekly(tmp_path / "warm")
    assert cold[:2].mean() > 1.2 * cold[4:].mean()
    assert abs(warm[:2].mean() - warm[4:].mean()) < 0.15 * warm[4:].mean()
    with pytest.raises(InvalidInput):
        generate_hospital(tmp_path / "bad", **period, warmup_days=-1)


def test_each_site_knows_its_scenarios():
    period = (date(2026, 1, 31), date(2026, 4, 1))
    placed = Scenario.choose("unit-change@east,population-shift@south", *period, SITES).places(SITES)
    assert placed == {"north": [], "south": ["population-shift"], "east": ["unit-change"]}
    bare = Scenario.choose("unit-mislabel,protocol-change", *period, SITES).places(SITES)
    assert bare == {"north": ["unit-mislabel", "protocol-change"], "south": ["protocol-change"],
                    "east": ["protocol-change"]}
    assert Scenario.choose(None, *period, SITES).places(SITES) == {site: [] for site in SITES}
