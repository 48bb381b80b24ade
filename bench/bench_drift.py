"""A full drift report, ours against Evidently's ``DataDriftPreset``, over the same data in the same run.

Data shaped like what hospitals send (1,000,000 rows x 30 features by default, reference and
current): vitals charted at whole units or one decimal, right-skewed labs (log-normal, reported at
their precision, so heavy ties; creatinine with a dialysis tail), integer counts, five categorical
columns of 3-5 levels, missingness from none to 80%. The current data shifts eight columns
(location, scale, a category share, creatinine in umol/L (x 88.4) on 4% of rows, a 0.3 offset on a
third of potassium values) and leaves the other 22 alone.

In the same run:
- ours: ``monitoring.drift_report`` on the in-memory Arrow tables (value counts of every column,
  the reference's decile edges, both drift rules on the aggregates);
- Evidently 0.7.23's ``Report([DataDriftPreset()]).run`` on the same data as pandas frames (read
  from the same Parquet files; only ``run`` is timed), in its own environment (bench/_evidently.py);
- agreement: where Evidently's test is the one our ``evidently`` rule runs (normed Wasserstein and
  Jensen-Shannon for this 1M-row reference; KS and chi-square for a 1,000-row reference, run
  again against the same current data), the largest absolute difference. Fails over ``TOLERANCE``;
- memory: a child process streams both Parquet files in 65,536-row batches through our report and
  says how much its resident memory grew, beside the size of the current data;
- Dask: the same report over 10,000,000 current rows made in 500,000-row partitions on a local
  cluster of two worker processes (each partition made and counted on its worker; only the counts
  travel), with the time and the workers' and the driver's peak memory.

Run: .venv/bin/python bench/bench_drift.py [--rows N] [--dask-rows N]
Targets: ours at least 10x faster than Evidently; the shared statistics equal within TOLERANCE.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _evidently import ensure_environment, worker
from _results import record

from vitalops.monitoring.drift_report import DriftReport, drift_report, judge, reference_of, stream_value_counts

ROWS = 1_000_000
DASK_ROWS = 10_000_000
PARTITION_ROWS = 500_000
SMALL_REFERENCE = 1_000
BATCH_ROWS = 65_536
#: Both sides compute the same float64 formula (scipy's W1 on the same values, the same shares):
#: ours sums over distinct values with their counts, Evidently over the rows, so the two differ
#: only by the order of float64 sums over at most 2M terms, under 2M * 2.2e-16 = 4.4e-10 of a
#: value of order 1. 1e-8 leaves room for that and flags any real difference (a floor, another
#: binning, another normalization) which would be 1e-4 or more.
TOLERANCE = 1e-8

CATEGORICAL = {  # name: level shares in the reference
    "sex": [0.51, 0.48, 0.01], "admission_type": [0.55, 0.30, 0.10, 0.05], "triage_esi": [0.05, 0.25, 0.45, 0.2, 0.05],
    "insurance": [0.45, 0.40, 0.15], "arrival_mode": [0.6, 0.3, 0.1],
}
SHIFTED = ("heart_rate", "temperature_c", "lactate", "creatinine", "bun", "potassium", "admission_type", "triage_esi")


def _missing(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    return np.where(rng.random(values.shape[0]) < share, np.nan, values)


def make_table(rows: int, seed: int, shifted: bool) -> pa.Table:
    """``rows`` hospital-like rows (see the module docstring); ``shifted``: the current data's changes."""
    rng = np.random.default_rng(seed)
    s = shifted
    n = rows
    columns: dict[str, np.ndarray] = {}
    # vitals: near normal, charted at whole units (temperature at one decimal), a few missing
    columns["heart_rate"] = _missing(rng, np.round(rng.normal(85 + 6 * s, 15, n)), 0.02)
    columns["respiratory_rate"] = _missing(rng, np.round(rng.normal(18, 4, n)), 0.05)
    columns["systolic_bp"] = _missing(rng, np.round(rng.normal(125, 18, n)), 0.03)
    columns["diastolic_bp"] = _missing(rng, np.round(rng.normal(72, 11, n)), 0.03)
    columns["spo2"] = _missing(rng, np.clip(np.round(100 - rng.gamma(1.5, 1.8, n)), 70, 100), 0.04)
    columns["temperature_c"] = _missing(rng, np.round(rng.normal(37.0, 0.6 * (1.5 if s else 1.0), n), 1), 0.08)
    columns["weight_kg"] = _missing(rng, np.round(rng.lognormal(4.38, 0.22, n), 1), 0.15)
    # labs: log-normal, at their reporting precision, missing on many rows
    creatinine = np.where(rng.random(n) < 0.03, rng.uniform(4.0, 12.0, n), rng.lognormal(0.0, 0.3, n))
    if s:  # one feed sends umol/L under mg/dL on 4% of rows
        creatinine = np.where(rng.random(n) < 0.04, creatinine * 88.4, creatinine)
    columns["creatinine"] = _missing(rng, np.round(creatinine, 2), 0.35)
    columns["lactate"] = _missing(rng, np.round(rng.lognormal(0.3, 0.7 if s else 0.5, n), 1), 0.6)
    columns["wbc"] = _missing(rng, np.round(rng.lognormal(2.1, 0.35, n), 1), 0.3)
    columns["hemoglobin"] = _missing(rng, np.round(rng.normal(12.5, 1.9, n), 1), 0.3)
    columns["platelets"] = _missing(rng, np.round(rng.lognormal(5.4, 0.35, n)), 0.3)
    columns["glucose"] = _missing(rng, np.round(rng.lognormal(4.75, 0.25, n)), 0.25)
    columns["sodium"] = _missing(rng, np.round(rng.normal(139, 3.2, n)), 0.3)
    potassium = rng.normal(4.2, 0.5, n) + np.where(s & (rng.random(n) < 0.33), 0.3, 0.0)
    columns["potassium"] = _missing(rng, np.round(potassium, 1), 0.3)
    columns["bilirubin"] = _missing(rng, np.round(rng.lognormal(-0.3, 0.6, n), 1), 0.55)
    columns["bun"] = _missing(rng, np.round(rng.lognormal(2.8 + 0.15 * s, 0.5, n)), 0.35)
    columns["hba1c"] = _missing(rng, np.round(rng.lognormal(1.8, 0.18, n), 1), 0.8)
    columns["crp"] = _missing(rng, np.round(rng.lognormal(1.5, 1.2, n), 1), 0.65)
    columns["troponin"] = _missing(rng, np.round(rng.lognormal(-4.0, 1.3, n), 3), 0.7)
    # integer counts and age
    columns["prior_admissions"] = rng.poisson(0.8, n).astype(np.float64)
    columns["medications"] = rng.poisson(8, n).astype(np.float64)
    columns["ed_visits_year"] = rng.negative_binomial(1, 0.4, n).astype(np.float64)
    columns["hours_since_admission"] = rng.geometric(0.02, n).astype(np.float64)
    columns["age"] = np.clip(np.round(rng.normal(62, 18, n)), 18, 100)
    for name, shares in CATEGORICAL.items():
        p = np.asarray(shares)
        if s and name == "admission_type":
            p = np.asarray([0.67, 0.22, 0.07, 0.04])
        if s and name == "triage_esi":
            p = np.asarray([0.10, 0.38, 0.35, 0.13, 0.04])
        codes = rng.choice(p.shape[0], size=n, p=p / p.sum()).astype(np.float64)
        columns[name] = _missing(rng, codes + (1.0 if name == "triage_esi" else 0.0), 0.01)
    return pa.table(columns)


def partition(index: int) -> pa.Table:
    """The Dask run's ``index``-th current partition (made on the worker)."""
    return make_table(PARTITION_ROWS, 1000 + index, shifted=True)


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _reset_peak() -> None:
    """Reset this process's peak resident memory (VmHWM) to its current size (Linux 4.0+)."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    """Peak resident memory since the last ``_reset_peak`` (or since the start)."""
    return _status_mb("VmHWM")


def memory_child(folder: Path, columns: list[str]) -> None:
    """Stream both Parquet files through the report; print the resident memory's growth (JSON)."""
    warm = make_table(2000, 3, shifted=False)
    drift_report(warm, warm, columns)  # imports and first-call allocations out of the figure
    before = _rss_mb()
    _reset_peak()
    started = time.perf_counter()
    reference = pq.ParquetFile(folder / "reference.parquet").iter_batches(BATCH_ROWS)
    current = pq.ParquetFile(folder / "current.parquet").iter_batches(BATCH_ROWS)
    report = drift_report(reference, current, columns)
    print(json.dumps({"seconds": time.perf_counter() - started, "rss_before_mb": before, "peak_mb": _peak_mb(),
                      "aggregate_points": report.aggregate_points, "flagged": report.flagged()}))


def _evidently_columns(reference_report: DriftReport) -> tuple[list[str], list[str]]:
    numerical = [n for n, c in reference_report.columns.items() if not c.categorical]
    categorical = [n for n, c in reference_report.columns.items() if c.categorical]
    return numerical, categorical


def _compare(report: DriftReport, theirs: dict[str, Any], tests: dict[str, str]
             ) -> tuple[dict[str, float], list[str]]:
    """Largest |ours - Evidently's| per shared test (our test name -> Evidently's method), over the
    columns where both ran the same test; and the columns where they did not (with both tests)."""
    worst: dict[str, float] = {}
    different = []
    for name, column in report.columns.items():
        verdict = column.evidently
        assert verdict is not None and verdict.value is not None
        method = theirs[name]["method"]
        if tests.get(verdict.test) != method:
            different.append(f"{name} (ours {verdict.test}, Evidently {method})")
            continue
        if verdict.drift != theirs[name]["drift"]:
            raise SystemExit(f"{name}: the same test, but our 'evidently' rule and Evidently judge it differently")
        difference = abs(float(verdict.value) - theirs[name]["value"])
        worst[verdict.test] = max(worst.get(verdict.test, 0.0), difference)
    return worst, different


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="reference and current rows (default 1,000,000)")
    parser.add_argument("--dask-rows", type=int, default=DASK_ROWS, help="current rows on Dask (default 10,000,000)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.memory_child:
        memory_child(Path(options.memory_child), json.loads(sys.stdin.read()))
        return

    _, created = ensure_environment()
    if created:
        print(f"created the Evidently environment in {created:.0f} s (once per machine)")
    reference, current = make_table(options.rows, 1, shifted=False), make_table(options.rows, 2, shifted=True)
    columns = reference.column_names
    data_mb = current.nbytes / 2**20
    with tempfile.TemporaryDirectory(prefix="vitalops-bench-drift-") as folder:
        pq.write_table(reference, f"{folder}/reference.parquet", row_group_size=BATCH_ROWS)
        pq.write_table(current, f"{folder}/current.parquet", row_group_size=BATCH_ROWS)
        pq.write_table(reference.slice(0, SMALL_REFERENCE), f"{folder}/small.parquet")

        warm = make_table(2000, 3, shifted=False)
        drift_report(warm, warm, columns)  # scipy's imports out of the figure, as Evidently's are out of its
        started = time.perf_counter()
        ours = drift_report(reference, current, columns)
        ours_seconds = time.perf_counter() - started
        numerical, categorical = _evidently_columns(ours)
        request = {"mode": "report", "numerical": numerical, "categorical": categorical,
                   "reference": f"{folder}/reference.parquet", "current": f"{folder}/current.parquet"}
        theirs = worker(request)
        small_ours = drift_report(reference.slice(0, SMALL_REFERENCE), current, columns)
        small_theirs = worker({**request, "reference": f"{folder}/small.parquet"})

        child = subprocess.run([sys.executable, __file__, "--memory-child", folder], input=json.dumps(columns),
                               capture_output=True, text=True, check=True, timeout=600)
        memory = json.loads(child.stdout.strip().splitlines()[-1])

    print(f"{options.rows:,} reference and {options.rows:,} current rows x {len(columns)} features "
          f"({len(categorical)} categorical); current data {data_mb:.0f} MiB in memory")
    speedup = theirs["seconds"] / ours_seconds
    print(f"ours (value counts, reference deciles, both rules): {ours_seconds:.2f} s; "
          f"Evidently DataDriftPreset run: {theirs['seconds']:.1f} s -> {speedup:.0f}x")
    flagged_theirs = sorted(n for n, c in theirs["columns"].items() if c["drift"])
    print(f"shifted columns:            {', '.join(SHIFTED)}")
    print(f"flagged by ours (vitalops): {', '.join(sorted(ours.flagged('vitalops')))}")
    print(f"flagged by Evidently:       {', '.join(flagged_theirs) or 'none'}")
    print(f"our 'evidently' rule flags: {', '.join(sorted(ours.flagged('evidently'))) or 'none'}")
    missed = [n for n in SHIFTED if n not in flagged_theirs]
    print(f"shifted columns Evidently misses: {', '.join(missed) or 'none'}; "
          f"unshifted columns ours flags: {', '.join(n for n in ours.flagged() if n not in SHIFTED) or 'none'}")
    large, large_different = _compare(ours, theirs["columns"], {
        "wasserstein_normed": "Wasserstein distance (normed)", "jensenshannon": "Jensen-Shannon distance"})
    small, small_different = _compare(small_ours, small_theirs["columns"], {"ks": "K-S p_value",
                                                                             "chisquare": "chi-square p_value"})
    agreement = {**large, **{f"{test} (1,000-row reference)": value for test, value in small.items()}}
    print("max |ours - Evidently| per shared test: "
          + ", ".join(f"{test} {value:.1e}" for test, value in agreement.items()) + f" (tolerance {TOLERANCE:g})")
    for label, different in (("1M-row", large_different), ("1,000-row", small_different)):
        if different:
            print(f"not the same test ({label} reference): {'; '.join(different)}")
    growth = memory["peak_mb"] - memory["rss_before_mb"]
    print(f"memory, streaming both files in {BATCH_ROWS:,}-row batches: resident memory grew {growth:.0f} MiB "
          f"(current data {data_mb:.0f} MiB; aggregates {memory['aggregate_points']:,} value-count pairs); "
          f"{memory['seconds']:.2f} s")

    dask = run_dask(reference, columns, options.dask_rows)
    print(f"Dask, {dask['rows']:,} current rows in {dask['partitions']} partitions of {PARTITION_ROWS:,} on 2 worker "
          f"processes: {dask['seconds']:.1f} s ({dask['rows'] / dask['seconds'] / 1e6:.2f} M rows/s); flagged "
          f"{', '.join(sorted(dask['flagged']))}; worker peak {dask['worker_peak_mb']:.0f} MiB each at most, "
          f"driver grew {dask['driver_growth_mb']:.0f} MiB (current data would be {dask['data_mb']:,.0f} MiB)")

    record("monitoring.drift_report_1m_vs_evidently", speedup, better="higher", unit="x Evidently",
           note=f"{options.rows:,} x {len(columns)} drift report, time of Evidently 0.7.23 DataDriftPreset.run "
                "over ours (value counts + both rules), same data, same run")
    record("monitoring.drift_report_stream_memory_share", growth / data_mb, better="lower", unit="x current data",
           note="resident memory growth streaming reference and current Parquet in 65,536-row batches, "
                "over the current data's in-memory size")
    record("monitoring.drift_report_dask_rows_per_s", dask["rows"] / dask["seconds"], better="higher",
           unit="rows/s", note=f"{dask['rows']:,} current rows made and counted on 2 Dask worker processes")
    worst = max(agreement.values())
    if worst > TOLERANCE:
        raise SystemExit(f"ours and Evidently disagree by {worst:.3g} (tolerance {TOLERANCE:g})")
    if speedup < 10:
        print(f"below the 10x target ({speedup:.1f}x)")


def run_dask(reference: pa.Table, columns: list[str], rows: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    from vitalops.monitoring.drift_report import value_counts_on_dask

    partitions = max(1, rows // PARTITION_ROWS)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit="4GiB") as cluster, Client(cluster) as client:
        client.run(lambda: None)  # workers up before the clock starts
        client.run(_reset_peak)
        before = _rss_mb()
        _reset_peak()
        started = time.perf_counter()
        counts = value_counts_on_dask(client, partition, range(partitions), columns)
        report = judge(reference_of(stream_value_counts(reference, columns)), counts)
        seconds = time.perf_counter() - started
        driver_growth = _peak_mb() - before
        peaks = client.run(_peak_mb)
    total = partitions * PARTITION_ROWS
    assert all(c.current_rows == total for c in report.columns.values())
    return {"rows": total, "partitions": partitions, "seconds": seconds, "flagged": report.flagged(),
            "worker_peak_mb": max(peaks.values()), "driver_growth_mb": driver_growth,
            "data_mb": total * len(columns) * 8 / 2**20}


if __name__ == "__main__":
    main()
