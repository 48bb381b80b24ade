"""Point-in-time training sets and online vectors.

Builds the ``deterioration`` demo training set from synthetic facts in FACTS_SCHEMA form
(inpatient stays with hourly vitals, labs every 8 hours, versioned encounters, conditions,
ICU stays and deaths) at 250k and 1M facts, on the local engine and on a one-worker Dask
LocalCluster, beside a baseline in the same run: DuckDB grouping the same facts by patient and
concept (a floor for any engine that has to read them). Then the online vector latency for one
patient from a 50-resource FHIR prefetch, beside normalization alone (the baseline) and beside the
DuckDB kernel on the same facts, and from a 500-resource prefetch beside normalization alone; and
the store path's latency (reading the Delta table).

Run: .venv/bin/python bench/bench_features.py [--online-only]
Targets: time linear in facts; Dask (1 worker) within 1.5x local; online p99 < 5 ms.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from _results import record
from deltalake import DeltaTable, write_deltalake

from vitalops.features import build_training_set, demo_spec_path, features_from_resources, load_spec
from vitalops.ingest.normalize import resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.lake.schema import FACTS_PARTITIONS, FACTS_SCHEMA
from vitalops.synth import generate_hospital
from vitalops.terminology import load_terminology

START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR_US = 3_600_000_000
VITALS = {"heart_rate": (85, 15), "respiratory_rate": (18, 4), "systolic_bp": (125, 18), "spo2": (96, 2),
          "body_temperature": (37.0, 0.6)}
LABS = {"lactate": (1.6, 0.8), "creatinine": (1.1, 0.4), "wbc": (9.0, 3.0)}
CONDITIONS = ("heart_failure", "copd", "ckd", "type2_diabetes", "sepsis")


def synthetic_facts(target: int, seed: int = 5) -> pa.Table:
    """About ``target`` facts for as many patients as it takes, in FACTS_SCHEMA form."""
    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {name: [] for name in FACTS_SCHEMA.names}
    base_us = int(START.timestamp() * 1_000_000)

    def add(patient, site, kind, concept, eff, known, *, value=None, code=None, end=None, encounter=None,
            source, version="1"):
        n = len(eff)
        columns["patient_key"] += [patient] * n
        columns["site"] += [site] * n
        columns["kind"] += [kind] * n
        columns["concept"] += [concept] * n
        columns["value_num"] += list(value) if value is not None else [None] * n
        columns["value_code"] += [code] * n
        columns["status"] += [None] * n
        columns["encounter_key"] += [encounter] * n
        columns["effective_at"] += list(eff)
        columns["effective_end"] += list(end) if end is not None else [None] * n
        columns["known_at"] += list(known)
        columns["source_type"] += [kind] * n
        columns["source_id"] += [f"{source}-{i}" for i in range(n)] if n > 1 else [source]
        columns["source_version"] += [version] * n

    count, number = 0, 0
    while count < target:
        patient = hashlib.sha256(f"patient-{seed}-{number}".encode()).hexdigest()
        site = ("north", "south", "east")[number % 3]
        number += 1
        before = len(columns["patient_key"])
        born = base_us - int(rng.uniform(20, 90) * 365.25 * 24 * HOUR_US)
        add(patient, site, "demographic", "birth", [born], [base_us - 400 * 24 * HOUR_US], source=f"{patient}-pt")
        add(patient, site, "demographic", "sex", [born], [base_us - 400 * 24 * HOUR_US],
            code=("female", "male")[number % 2], source=f"{patient}-pt")
        for concept in rng.choice(CONDITIONS, size=rng.integers(0, 3), replace=False):
            onset = base_us + int(rng.uniform(-300, 300) * 24 * HOUR_US)
            add(patient, site, "condition", str(concept), [onset], [onset + 2 * HOUR_US], source=f"{patient}-{concept}")
        admit = base_us + int(rng.uniform(0, 500) * 24 * HOUR_US)
        for stay in range(int(rng.integers(1, 3))):
            length_h = int(rng.integers(24, 240))
            discharge = admit + length_h * HOUR_US
            encounter = f"{patient}-enc{stay}"
            add(patient, site, "encounter", "encounter", [admit], [admit], code="IMP", encounter=encounter,
                source=encounter)
            add(patient, site, "encounter", "encounter", [admit], [discharge], code="IMP", end=[discharge],
                encounter=encounter, source=encounter, version="2")
            hours = np.arange(0, length_h, 1)
            for concept, (mean, spread) in VITALS.items():
                eff = admit + hours * HOUR_US + rng.integers(0, 600_000_000, len(hours))
                add(patient, site, "vital", concept, eff, eff + 300_000_000, value=rng.normal(mean, spread, len(hours)),
                    encounter=encounter, source=f"{encounter}-{concept}")
            draws = np.arange(0, length_h, 8)
            for concept, (mean, spread) in LABS.items():
                eff = admit + draws * HOUR_US
                add(patient, site, "lab", concept, eff, eff + rng.integers(1, 4, len(draws)) * HOUR_US,
                    value=np.abs(rng.normal(mean, spread, len(draws))), encounter=encounter,
                    source=f"{encounter}-{concept}")
            if rng.random() < 0.08:
                icu = admit + int(rng.uniform(0.3, 0.9) * length_h) * HOUR_US
                add(patient, site, "encounter", "icu_stay", [icu], [icu], code="1027-2", encounter=encounter,
                    source=f"{encounter}-icu")
            admit = discharge + int(rng.uniform(5, 120) * 24 * HOUR_US)
        count += len(columns["patient_key"]) - before
    n = len(columns["patient_key"])
    columns["fact_id"] = [f"{i:016x}" for i in range(n)]
    columns["batch_id"] = ["bench"] * n
    columns["code_system"] = [None] * n
    columns["code"] = [None] * n
    columns["unit"] = [None] * n
    columns["issued_at"] = [None] * n
    to_ts = pa.timestamp("us", tz="UTC")
    for name in ("effective_at", "effective_end", "known_at", "issued_at"):
        columns[name] = pa.array(columns[name], pa.int64()).cast(to_ts)
    months = pa.compute.strftime(columns["effective_at"], format="%Y-%m")
    columns["month"] = months
    return pa.Table.from_pydict({name: columns[name] for name in FACTS_SCHEMA.names}, schema=FACTS_SCHEMA)


def baseline_seconds(lake_root: str) -> float:
    """DuckDB reading the facts through the same pyarrow dataset and grouping by patient and concept."""
    started = time.perf_counter()
    dataset = DeltaTable(f"{lake_root}/facts").to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("facts", dataset)
    con.sql("SELECT count(*) FROM (SELECT patient_key, concept, count(*), avg(value_num), max(epoch_us(known_at)) "
            "FROM facts GROUP BY 1, 2)").fetchall()
    return time.perf_counter() - started


def build_seconds(spec, lake_root: str, **options) -> tuple[float, int]:
    started = time.perf_counter()
    training_set = build_training_set(spec, lake_root, **options)
    return time.perf_counter() - started, training_set.table.num_rows


def _prefetch(size: int = 50) -> tuple[list[dict], datetime]:
    """``size`` resources of the synthetic patient with the most: its non-Observation resources (up to
    a fifth) and its latest Observations, as a CDS Hooks prefetch would carry them."""
    import orjson

    folder = Path(tempfile.mkdtemp(prefix="bench-online-"))
    generate_hospital(folder, patients=20, sites=["north"], seed=3)
    resources: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*.ndjson")):
        if path.name.startswith("ground_truth"):
            continue
        for line in path.read_bytes().splitlines():
            resource = orjson.loads(line)
            subject = resource["id"] if resource["resourceType"] == "Patient" else (
                resource.get("subject") or resource.get("patient") or {}).get("reference", "").removeprefix("Patient/")
            resources.setdefault(subject, []).append(resource)
    patient = max(resources, key=lambda key: len(resources[key]))
    chosen = sorted(resources[patient], key=lambda r: r["meta"]["lastUpdated"])
    prefetch = [r for r in chosen if r["resourceType"] != "Observation"][: size // 5]
    prefetch += [r for r in chosen if r["resourceType"] == "Observation"][-(size - len(prefetch)):]
    if len(prefetch) < size:
        raise RuntimeError(f"the synthetic patient with the most resources has fewer than {size}")
    at = max(datetime.fromisoformat(r["meta"]["lastUpdated"]) for r in prefetch) + timedelta(minutes=5)
    return prefetch, at


def _timed(call, repeats: int, warmup: int = 20) -> list[float]:
    seconds = []
    for _ in range(warmup + repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds[warmup:]


def online_latency(spec, size: int = 50) -> dict[str, list[float]]:
    """Per-call seconds, ``size``-resource prefetch: the online vector (normalization + vector kernel),
    normalization alone (the baseline), the vector kernel alone and the DuckDB kernel on the same
    normalized facts, and orjson parsing the prefetch as a CDS Hooks request carries it (a floor:
    every call parses its body before anything of ours runs)."""
    import orjson

    from vitalops.features.engine import compute_features
    from vitalops.features.online import vector_from_facts

    prefetch, at = _prefetch(size)
    pseudonymizer, terminology = Pseudonymizer(b"bench-key"), load_terminology()
    facts = resources_to_facts(prefetch, site="north", pseudonymizer=pseudonymizer, terminology=terminology,
                               known_at_default=at).facts
    patient = facts.column("patient_key")[0].as_py()
    index = pa.table({"patient_key": [patient], "index_time": pa.array([at], pa.timestamp("us", tz="UTC")),
                      "encounter_key": [None], "site": ["north"]})
    body = orjson.dumps({"prefetch": {"observations": {"resourceType": "Bundle", "type": "searchset",
                                                        "entry": [{"resource": r} for r in prefetch]}}})
    print(f"prefetch: {len(prefetch)} resources -> {facts.num_rows} facts; request body {len(body):,} bytes")
    return {
        "parse": _timed(lambda: orjson.loads(body), 500),
        "vector": _timed(lambda: features_from_resources(spec, prefetch, at=at, site="north",
                                                         pseudonymizer=pseudonymizer, terminology=terminology), 500),
        "normalize": _timed(lambda: resources_to_facts(prefetch, site="north", pseudonymizer=pseudonymizer,
                                                       terminology=terminology, known_at_default=at), 500),
        "kernel": _timed(lambda: vector_from_facts(facts, spec, patient, at=at), 500),
        "duckdb": _timed(lambda: compute_features(facts, index, spec), 40, warmup=5),
    }


def store_latency(spec, lake_root: str) -> list[float]:
    """Per-call seconds of features_from_store for one patient of a bench lake."""
    from vitalops.features import features_from_store

    patient = DeltaTable(f"{lake_root}/facts").to_pyarrow_dataset().head(1, columns=["patient_key"])
    key = patient.column("patient_key")[0].as_py()
    return _timed(lambda: features_from_store(spec, lake_root, key, at=START + timedelta(days=30)), 20, warmup=2)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> None:
    from distributed import LocalCluster

    spec = load_spec(demo_spec_path("deterioration"))
    root = Path(tempfile.mkdtemp(prefix="bench-features-"))
    lakes = {}
    for size in (250_000, 1_000_000):
        facts = synthetic_facts(size)
        lake_root = str(root / f"lake{size}")
        write_deltalake(f"{lake_root}/facts", facts, partition_by=FACTS_PARTITIONS)
        lakes[size] = (lake_root, facts.num_rows)
    print(f"deterioration spec: {len(spec.features)} features; facts written under {root}")
    results = {}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        for size, (lake_root, facts) in lakes.items():
            base = baseline_seconds(lake_root)
            local, rows = build_seconds(spec, lake_root)
            dask, _ = build_seconds(spec, lake_root, engine="dask", scheduler=cluster.scheduler_address)
            results[size] = (local, dask)
            label = f"{size // 1000}k" if size < 1_000_000 else f"{size // 1_000_000}m"
            record(f"features.pit_{label}_vs_duckdb_scan", base / local, better="higher", unit="x baseline",
                   note=f"training set of {facts:,} facts, local engine, relative to a DuckDB scan and group of "
                        "the same facts (baseline seconds / build seconds)")
            record(f"features.dask_vs_local_{label}", dask / local, better="lower", unit="x local",
                   note="one-worker Dask LocalCluster build time / local engine, same facts (target <= 1.5)")
            print(f"{facts:>9,} facts, {rows:>7,} rows | baseline scan+group {base:6.2f} s "
                  f"({facts / base:>12,.0f} facts/s)")
            print(f"{'':>28}| local  {local:6.2f} s  {rows / local:>9,.0f} rows/s  {facts / local:>11,.0f} facts/s")
            print(f"{'':>28}| dask/1 {dask:6.2f} s  {rows / dask:>9,.0f} rows/s  {facts / dask:>11,.0f} facts/s"
                  f"  ({dask / local:.2f}x local; target <= 1.5x)")
    small, large = results[250_000][0], results[1_000_000][0]
    ratio_facts = lakes[1_000_000][1] / lakes[250_000][1]
    print(f"linearity: {ratio_facts:.2f}x facts took {large / small:.2f}x the local time (linear: about "
          f"{ratio_facts:.2f}x)")
    record("features.pit_linearity", (large / small) / ratio_facts, better="lower", unit="x linear",
           note="(1M-fact time / 250k-fact time) / (fact ratio): 1.0 is linear")
    print_online(spec)
    store = store_latency(spec, lakes[250_000][0])
    print(f"online vector from the facts store (Delta, {lakes[250_000][1]:,} facts): median "
          f"{statistics.median(store) * 1000:.1f} ms, p99 {percentile(store, 99) * 1000:.1f} ms (no target)")


def _figures(seconds: list[float]) -> str:
    return f"median {statistics.median(seconds) * 1000:.2f} ms, p99 {percentile(seconds, 99) * 1000:.2f} ms"


def print_online(spec) -> None:
    timings = online_latency(spec)
    print(f"online vector, 50-resource prefetch: {_figures(timings['vector'])} (target p99 < 5 ms)")
    print(f"  baseline, orjson parse of the body: {_figures(timings['parse'])}")
    print(f"  baseline, normalization alone:     {_figures(timings['normalize'])}")
    print(f"  vector kernel alone (same facts):  {_figures(timings['kernel'])}")
    print(f"  DuckDB kernel (same facts):        {_figures(timings['duckdb'])} (the training-set kernel)")
    vector_p99, duckdb_median = percentile(timings["vector"], 99), statistics.median(timings["duckdb"])
    record("features.online_vector_p99_ms", vector_p99 * 1000, better="lower", unit="ms",
           note="features_from_resources, 50-resource prefetch, p99 of 500 calls (target < 5 ms; load-sensitive)")
    record("features.online_vector_vs_duckdb_kernel", duckdb_median / statistics.median(timings["vector"]),
           better="higher", unit="x baseline",
           note="DuckDB kernel median on the same facts / online vector median (normalization + vector kernel); "
                "the baseline excludes normalization, so a slower normalization shows")
    record("features.online_normalize_vs_kernel", statistics.median(timings["kernel"])
           / statistics.median(timings["normalize"]), better="higher", unit="x baseline",
           note="vector kernel median / normalization (resources_to_facts) median of the same prefetch")
    record("features.online_vector_vs_parse", statistics.median(timings["parse"])
           / statistics.median(timings["vector"]), better="higher", unit="x baseline",
           note="orjson parse median of the 50-resource prefetch's request body / online vector median")
    large = online_latency(spec, 500)
    print(f"online vector, 500-resource prefetch: {_figures(large['vector'])} (target p99 < 5 ms)")
    print(f"  baseline, orjson parse of the body: {_figures(large['parse'])}")
    print(f"  baseline, normalization alone:     {_figures(large['normalize'])}")
    print(f"  vector kernel alone (same facts):  {_figures(large['kernel'])}")
    print(f"  DuckDB kernel (same facts):        {_figures(large['duckdb'])}")
    record("features.online_vector_500_p99_ms", percentile(large["vector"], 99) * 1000, better="lower", unit="ms",
           note="features_from_resources, 500-resource prefetch, p99 of 500 calls (target < 5 ms; load-sensitive)")
    record("features.online_vector_500_vs_parse", statistics.median(large["parse"])
           / statistics.median(large["vector"]), better="higher", unit="x baseline",
           note="orjson parse median of the 500-resource prefetch's request body / online vector median")


if __name__ == "__main__":
    if "--online-only" in sys.argv:
        print_online(load_spec(demo_spec_path("deterioration")))
    else:
        main()
