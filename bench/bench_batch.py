"""Batch scoring: the kernel against the model's own ``predict_proba``, and one Dask worker against local.

1,000,000 rows x 28 features shaped like ward data (vitals near normal with outliers, right-skewed
labs, labs missing on most rows, rare binary conditions, about 40,000 patients at two sites),
scored by a median-impute + scale + logistic Pipeline and by a LightGBM model (100 trees,
``num_threads=1``), both fitted on 50,000 of the rows. For each model, in the same run:

- baseline: ``model.predict_proba(X)[:, 1]`` on the float64 matrix (the model's own rows/s);
- kernel: ``batch.kernel.score_partition`` over the Arrow rows in 250,000-row partitions, as the
  local engine runs it: routing per site (``serving.routing``), the matrix built from the table,
  the fast predictor, bands and decisions (champion at both sites, so one score per row, as the
  baseline);
- dask: the same partitions on a one-worker ``LocalCluster`` (processes, one thread).

Run: .venv/bin/python bench/bench_batch.py
Targets: kernel at least 70% of ``predict_proba`` rows/s; one Dask worker within 1.5x of local.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
from _results import record

from vitalops.artifacts import load_predictor, open_store, save_model
from vitalops.batch.kernel import ScoringPlan, ScoringVersion, score_partition
from vitalops.batch.scoring import _partitions, _run
from vitalops.serving.routing import SiteDeployments

ROWS = 1_000_000
PATIENTS = 40_000
FIT_ROWS = 50_000
SEED = 7
# (name, centre, spread, share missing): vitals are charted on most rows, labs on few.
VITALS = [("heart_rate", 85, 15, 0.05), ("respiratory_rate", 18, 4, 0.08), ("systolic_bp", 125, 18, 0.06),
          ("spo2", 96, 2, 0.07), ("temperature", 37.0, 0.6, 0.15)]
LABS = [("lactate", 0.4, 0.5, 0.75), ("creatinine", 0.05, 0.45, 0.55), ("wbc", 2.1, 0.35, 0.55)]


def hospital_rows(rows: int = ROWS, seed: int = SEED) -> tuple[pa.Table, list[str], np.ndarray, np.ndarray]:
    """(table with patient_key, site, index_time and 28 features; names; matrix; labels)."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}

    def missing(values: np.ndarray, share: float) -> np.ndarray:
        values = values.astype(np.float64)
        values[rng.random(rows) < share] = np.nan
        return values

    for name, centre, spread, share in VITALS:
        values = rng.normal(centre, spread, rows)
        outliers = rng.random(rows) < 0.01
        values[outliers] += rng.normal(0, spread * 4, int(outliers.sum()))
        columns[f"{name}_last"] = missing(values, share)
        columns[f"{name}_extreme_12h"] = missing(values + np.abs(rng.normal(0, spread / 2, rows)), share)
        columns[f"{name}_slope_24h"] = missing(rng.normal(0, spread / 10, rows), share * 2)
    for name, mu, sigma, share in LABS:
        columns[f"{name}_last"] = missing(rng.lognormal(mu, sigma, rows), share)
        columns[f"{name}_delta"] = missing(rng.normal(0, 0.3, rows) * np.exp(mu), min(share * 1.2, 0.95))
    columns["age"] = np.clip(rng.normal(64, 17, rows), 18, 100)
    columns["female"] = (rng.random(rows) < 0.52).astype(np.float64)
    for name, rate in (("heart_failure", 0.12), ("copd", 0.1), ("ckd", 0.15), ("sepsis_7d", 0.04)):
        columns[name] = (rng.random(rows) < rate).astype(np.float64)
    columns["length_of_stay_hours"] = rng.gamma(1.5, 40, rows)
    names = list(columns)[:28]
    matrix = np.column_stack([columns[name] for name in names])
    filled = np.where(np.isnan(matrix), np.nanmedian(matrix, axis=0), matrix)
    z = (filled - filled.mean(axis=0)) / filled.std(axis=0)
    logit = -3.2 + z[:, :8] @ rng.normal(0, 0.4, 8) + 0.6 * columns["sepsis_7d"]
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    patient = rng.integers(0, PATIENTS, rows)
    keys = np.array([hashlib.sha256(str(p).encode()).hexdigest() for p in range(PATIENTS)], dtype=object)
    sites = np.where(patient % 3 == 0, "south", "north")
    start = np.datetime64("2025-01-01T00:00:00", "us")
    times = start + (rng.integers(0, 365 * 24, rows) * 3_600_000_000).astype("timedelta64[us]")
    table = pa.table({"patient_key": pa.array(keys[patient], pa.string()), "site": pa.array(sites, pa.string()),
                      "index_time": pa.array(times, pa.timestamp("us", tz="UTC")),
                      **{name: pa.array(matrix[:, i], mask=np.isnan(matrix[:, i])) for i, name in enumerate(names)}})
    table = table.append_column("row", pa.array(np.arange(rows), pa.int64()))
    return table, names, matrix, labels


def logistic_model(matrix: np.ndarray, labels: np.ndarray):  # type: ignore[no-untyped-def]
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    model = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                      ("scale", StandardScaler()), ("model", LogisticRegression(max_iter=500))])
    return model.fit(matrix[:FIT_ROWS], labels[:FIT_ROWS]), "sklearn"


def lightgbm_model(matrix: np.ndarray, labels: np.ndarray):  # type: ignore[no-untyped-def]
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=100, num_leaves=31, learning_rate=0.1, n_jobs=1, verbose=-1)
    return model.fit(matrix[:FIT_ROWS], labels[:FIT_ROWS]), "lightgbm"


def best_of(call: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def plan_for(model, flavor: str, names: list[str]) -> ScoringPlan:  # type: ignore[no-untyped-def]
    store = open_store(tempfile.mkdtemp(prefix="bench-batch-artifacts-"))
    bundle = save_model(store, model, flavor=flavor, feature_names=names)
    predictor = load_predictor(bundle.sha256, store=store)
    version = ScoringVersion(1, 1, bundle.sha256, None, 0.2, 0.1, 0.2, predictor)
    sites = {site: SiteDeployments(1, (1, 1, event), None, event) for event, site in ((1, "north"), (2, "south"))}
    return ScoringPlan("bench", sites, {1: version})


def main() -> None:
    from distributed import LocalCluster

    started = time.perf_counter()
    table, names, matrix, labels = hospital_rows()
    print(f"{ROWS:,} rows x {len(names)} features, {np.isnan(matrix).mean():.0%} of values missing, "
          f"prevalence {labels.mean():.1%} (built in {time.perf_counter() - started:.1f} s)")
    parts = _partitions(table, 4)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        for label, fit in (("logistic", logistic_model), ("lightgbm", lightgbm_model)):
            model, flavor = fit(matrix, labels)
            plan = plan_for(model, flavor, names)
            kernel = np.concatenate([score_partition(plan, part).column("score").to_numpy() for part in parts])
            rows_order = np.concatenate([part.column("row").to_numpy() for part in parts])
            own = model.predict_proba(matrix)[:, 1]
            assert np.max(np.abs(kernel - own[rows_order])) < 1e-12, "the kernel must equal predict_proba"
            baseline = best_of(lambda model=model: model.predict_proba(matrix))
            local = best_of(lambda plan=plan: _run(plan, parts, "local", None, lambda done, total: None))
            dask = best_of(lambda plan=plan: _run(plan, parts, "dask", cluster.scheduler_address,
                                                  lambda done, total: None), repeats=2)
            print(f"{label:>9} | predict_proba {ROWS / baseline:>11,.0f} rows/s | kernel {ROWS / local:>11,.0f} "
                  f"rows/s ({baseline / local:.0%} of predict_proba; target >= 70%) | dask/1 {ROWS / dask:>11,.0f}"
                  f" rows/s ({dask / local:.2f}x local; target <= 1.5x)")
            record(f"batch.kernel_vs_predict_proba_{label}", baseline / local, better="higher", unit="x baseline",
                   note=f"1M rows x 28 hospital-shaped features, {label}: batch kernel rows/s (routing, matrix from "
                        "Arrow, fast predictor, bands) / the model's own predict_proba rows/s (target >= 0.7)")
            record(f"batch.dask_vs_local_{label}", dask / local, better="lower", unit="x local",
                   note=f"{label}: one-worker Dask LocalCluster (processes) time / local engine, same 4 partitions "
                        "(target <= 1.5)")


if __name__ == "__main__":
    main()
