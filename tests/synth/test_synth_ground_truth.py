"""The ground truth has realistic prevalence, and vitals and labs carry real signal about it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from tests.synth.synth_reading import code_of, moment, read_ndjson
from vitalops.synth import GROUND_TRUTH_FILE, generate_hospital

FEATURE_CODES = ("8867-4", "9279-1", "59408-5", "85354-9", "2524-7", "2160-0")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("truth")
    generate_hospital(out, patients=450, sites=["north", "south", "east"], seed=17)
    return out


def _truth(out: Path, kind: str) -> list[dict[str, Any]]:
    return [r for r in read_ndjson(out / GROUND_TRUTH_FILE) if r["kind"] == kind]


def test_prevalence_of_deterioration_and_readmission_is_in_range(export: Path) -> None:
    stays = _truth(export, "stay")
    assert len(stays) > 300
    deterioration = np.mean([s["deteriorated"] for s in stays])
    assert 0.04 <= deterioration <= 0.11
    alive = [s for s in stays if s["died_at"] is None and not s["readmission_censored"]]
    readmission = np.mean([s["readmitted_30d"] for s in alive])
    assert 0.08 <= readmission <= 0.24
    events = [s for s in stays if s["deteriorated"]]
    assert {s["event_type"] for s in events} == {"icu", "death"}
    assert all(s["icu_encounter_id"] for s in events if s["event_type"] == "icu")


def test_readmissions_are_real_encounters_within_30_days(export: Path) -> None:
    stays = {s["encounter_id"]: s for s in _truth(export, "stay")}
    readmitted = [s for s in stays.values() if s["readmitted_30d"] and not s["readmission_censored"]]
    assert readmitted
    for stay in readmitted:
        follow_up = stays[stay["readmission_encounter_id"]]
        gap = moment(follow_up["admitted_at"]) - moment(stay["discharged_at"])
        assert 0 < gap < 30 * 86400
    for stay in stays.values():
        if stay["readmitted_30d"] is False:
            later = [
                s
                for s in stays.values()
                if s["patient_id"] == stay["patient_id"]
                and 0 < moment(s["admitted_at"]) - moment(stay["discharged_at"]) < 30 * 86400
            ]
            assert not later


def test_true_risk_is_calibrated_in_aggregate(export: Path) -> None:
    stays = _truth(export, "stay")
    expected = sum(s["deterioration_risk"] for s in stays)
    observed = sum(s["deteriorated"] for s in stays)
    assert abs(observed - expected) < 3 * np.sqrt(expected)


def test_first_day_vitals_and_labs_predict_deterioration(export: Path) -> None:
    """A plain logistic model on first-24-hour means finds the signal the generator planted."""
    stays = {s["encounter_id"]: s for s in _truth(export, "stay")}
    icu_to_stay = {s["icu_encounter_id"]: e for e, s in stays.items() if s["icu_encounter_id"]}
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for observation in read_ndjson(export / "Observation.ndjson"):
        code = code_of(observation)
        if code not in FEATURE_CODES:
            continue
        encounter = observation["encounter"]["reference"].split("/")[1]
        encounter = icu_to_stay.get(encounter, encounter)
        stay = stays.get(encounter)
        if stay is None or moment(observation["effectiveDateTime"]) > moment(stay["admitted_at"]) + 86400:
            continue
        quantity = observation["component"][0]["valueQuantity"] if code == "85354-9" else observation["valueQuantity"]
        values[encounter][code].append(quantity["value"])
    rows, labels = [], []
    for encounter, stay in stays.items():
        measured = values[encounter]
        rows.append(
            [stay["age_at_admission"], stay["comorbidity_count"]]
            + [np.mean(measured[c]) if measured[c] else np.nan for c in FEATURE_CODES]
        )
        labels.append(stay["deteriorated"])
    features = np.array(rows, dtype=float)
    features = np.where(np.isnan(features), np.nanmedian(features, axis=0), features)
    features = (features - features.mean(axis=0)) / features.std(axis=0)
    scores = cross_val_predict(LogisticRegression(max_iter=500), features, labels, cv=4, method="predict_proba")[:, 1]
    assert roc_auc_score(labels, scores) > 0.65
