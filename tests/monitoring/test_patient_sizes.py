"""The drift tests count patients, not rows: a window whose rows come from few patients (each
scored every few hours) carries the evidence of those patients. Its effect sizes are the rows'
own; its p-values rest on the distinct patients (and the reference's own)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import norm

from tests.monitoring.conftest import DAY0, MODEL, OPERATOR, feature_rows
from vitalops.artifacts import open_store
from vitalops.batch.scoring import score_batch
from vitalops.monitoring.engine import run_monitoring
from vitalops.monitoring.results import read_results
from vitalops.monitoring.stats import Distribution, chi_square, independent_share, ks_2samp, vitalops_rule

ONE_BACKEND = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
ROWS, PATIENTS = 300, 30


def test_the_p_values_rest_on_the_effective_sizes_and_the_effect_sizes_do_not():
    rng = np.random.default_rng(4)
    reference = Distribution.from_values(np.round(rng.normal(64, 16, 3000), 1))
    ages = np.round(72 + 16 * norm.ppf((np.arange(PATIENTS) + 0.5) / PATIENTS), 1)
    current = Distribution.from_values(np.repeat(ages, ROWS // PATIENTS))  # 30 patients, 10 rows each
    share = independent_share(PATIENTS, ROWS)
    assert share == pytest.approx(0.1)
    as_rows = vitalops_rule(reference, current)
    as_patients = vitalops_rule(reference, current, independent=(1.0, share))
    assert as_rows.statistics["psi"] == as_patients.statistics["psi"] >= 0.2
    assert as_rows.statistics["ks_statistic"] == as_patients.statistics["ks_statistic"]
    assert as_rows.statistics["ks_pvalue"] < 0.001 < 0.01 < as_patients.statistics["ks_pvalue"]
    assert as_rows.drift and not as_patients.drift
    # the p-value of 30 independent values is the one the 30 patients give
    once = Distribution.from_values(ages)
    assert as_patients.statistics["ks_pvalue"] == pytest.approx(ks_2samp(reference, once)[1], rel=1e-9)
    # a shift large enough is flagged on the patients' evidence alone
    far = Distribution.from_values(np.repeat(ages + 20, ROWS // PATIENTS))
    assert vitalops_rule(reference, far, independent=(1.0, share)).drift
    # chi-square: counts scaled to their effective sizes
    _, p_rows = chi_square(np.array([800, 200]), np.array([230, 70]))
    _, p_patients = chi_square(np.array([800, 200]), np.array([230, 70]), independent=(1.0, 0.1))
    _, p_scaled = chi_square(np.array([800, 200]), np.array([23, 7]))
    assert p_patients == pytest.approx(p_scaled) and p_patients > p_rows
    assert independent_share(None, 100) == independent_share(500, 100) == 1.0


def _score(monitored, tmp_path, keys: list[str], name: str) -> None:
    """``ROWS`` rows at north on day 0, age at fixed quantiles of an older population, keyed ``keys``."""
    columns = feature_rows(np.random.default_rng(9), ROWS)
    ages = np.round(72 + 16 * norm.ppf((np.arange(PATIENTS) + 0.5) / PATIENTS), 1)
    columns["age"] = np.repeat(ages, ROWS // PATIENTS)
    times = [DAY0 + timedelta(minutes=4 * i) for i in range(ROWS)]
    table = pa.table({"patient_key": keys, "site": ["north"] * ROWS,
                      "index_time": pa.array(times, pa.timestamp("us", tz="UTC")),
                      **{feature: columns[feature] for feature in monitored.feature_names}})
    path = tmp_path / f"{name}.parquet"
    pq.write_table(table, path)
    score_batch(monitored.database, OPERATOR, MODEL, str(tmp_path / f"out-{name}"), lake_root=monitored.lake_root,
                runtime=monitored.context.runtime, input_uri=str(path))


def _age_drift(monitored):
    run_monitoring(monitored.database, OPERATOR, lake_root=monitored.lake_root,
                   store=open_store(monitored.settings.artifacts_root), model=MODEL, since=DAY0,
                   until=DAY0 + timedelta(days=1), now=DAY0 + timedelta(days=1, hours=1))
    with monitored.database.session() as session:
        (result,) = read_results(session, model=MODEL, metric_id="input_drift.psi/age")
        (scores,) = read_results(session, model=MODEL, metric_id="prediction_drift.score_psi")
    return result, scores


@ONE_BACKEND
def test_a_window_of_few_patients_scored_often_is_judged_on_those_patients(monitored, tmp_path):
    keys = [f"p{i // (ROWS // PATIENTS):063d}" for i in range(ROWS)]  # 30 patients, 10 rows each
    _score(monitored, tmp_path, keys, "few")
    result, scores = _age_drift(monitored)
    assert result.n == ROWS and result.value >= 0.2
    assert result.details["independent_share"] == [1.0, pytest.approx(PATIENTS / ROWS)]
    assert result.details["ks_pvalue"] > 0.01 and result.status == "ok"
    assert scores.details["patients"] == PATIENTS and scores.details["rows"] == ROWS
    assert scores.details["reference_patients"] == scores.details["reference_rows"] > 0


@ONE_BACKEND
def test_the_same_values_from_as_many_patients_as_rows_are_flagged(monitored, tmp_path):
    _score(monitored, tmp_path, [f"q{i:063d}" for i in range(ROWS)], "many")
    result, scores = _age_drift(monitored)
    assert result.n == ROWS and result.value >= 0.2
    assert result.details["independent_share"] == [1.0, 1.0]
    assert result.details["ks_pvalue"] < 0.001 and result.status == "flagged"
    assert scores.details["patients"] == ROWS
