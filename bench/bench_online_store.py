"""The online store on 100,000 patients: one patient's facts by key, alone and behind REST predict.

The home is the demo hospital's (``vitalops demo --no-serve``: its 1,000 patients' facts written by
ingest, about 300 each, a deterioration champion with its definitions at each site, a shadow at
north), with 99,000 more patients added to the store, each with 30 facts copied from a demo
patient, so that the store holds 100,000 patients as a ward's would. Measured:

- lookup alone: ``OnlineStore.facts_for`` (read and decode to the engine's columns) of demo
  patients, p50 and p99 over 2,000 lookups, beside the bare read of the same rows (one indexed
  ``SELECT`` on SQLite, one ``HGETALL`` on Redis, without decoding) as the baseline; Redis when
  ``VITALOPS_TEST_REDIS_URL`` (or 127.0.0.1:6379) answers;
- ``POST /v1/models/deterioration/predict`` by patient key (facts from the store, the vector
  kernel, scoring with its explanation, log and audit), one uvicorn worker, concurrency 16,
  beside a constant-response FastAPI endpoint driven by the same client in the same run.

Targets: lookup p99 under 5 ms; predict by patient key p99 under 20 ms.

    python bench/bench_online_store.py [--requests 1000] [--lookups 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _load
from _results import record

PATIENTS = 100_000
FILLER_FACTS = 30


def build_home(home: Path) -> None:
    env = dict(os.environ, VITALOPS_HOME=str(home))
    env.pop("VITALOPS_DATABASE_URL", None)
    print("building the demo hospital (vitalops demo --no-serve) ...", flush=True)
    subprocess.run([str(Path(sys.executable).with_name("vitalops")), "demo", "--no-serve"], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def fill(store, demo_keys: list[str], total: int) -> None:  # type: ignore[no-untyped-def]
    """Add patients until the store holds ``total``, each with FILLER_FACTS rows of a demo patient."""
    rng = random.Random(5)
    templates = store.rows(demo_keys[:200])
    sources = [list(rows.items())[:FILLER_FACTS] for rows in templates.values()]
    missing = total - store.patients()
    for start in range(0, missing, 2000):
        upserts = {}
        for index in range(start, min(start + 2000, missing)):
            key = f"{index:032x}filler{index:026x}"
            upserts[key] = {f"{fact_id[:48]}{index:016x}": row for fact_id, row in rng.choice(sources)}
        store.apply(upserts, {})


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)


def lookups(store, bare, keys: list[str], count: int) -> tuple[dict[str, float], dict[str, float]]:  # type: ignore[no-untyped-def]
    rng = random.Random(11)
    chosen = [rng.choice(keys) for _ in range(count)]
    for key in chosen[:100]:
        store.facts_for(key)
        bare(key)
    served, raw = [], []
    for key in chosen:
        started = time.perf_counter()
        bare(key)
        raw.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        store.facts_for(key)
        served.append((time.perf_counter() - started) * 1000)

    def summary(values: list[float]) -> dict[str, float]:
        return {"p50_ms": statistics.median(values), "p99_ms": percentile(values, 99)}

    return summary(served), summary(raw)


def clinician_key(home: Path) -> str:
    os.environ["VITALOPS_HOME"] = str(home)
    from vitalops.auth import SYSTEM
    from vitalops.auth.users import create_enrollment, create_user, redeem_enrollment
    from vitalops.core.settings import get_settings
    from vitalops.db import Database

    get_settings.cache_clear()
    database = Database(get_settings().db_url)
    with database.session() as session:
        create_user(session, SYSTEM, "bench-clinician", "clinician")
        _, token = create_enrollment(session, SYSTEM, "bench-clinician")
        _, key = redeem_enrollment(session, token)
    database.dispose()
    return key


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lookups", type=int, default=2000)
    args = _load.arguments(parser)
    if args is None:
        return
    from vitalops.features.online_backends import RedisOnlineStore, SQLiteOnlineStore

    os.environ.update({"VITALOPS_ENVIRONMENT": "test", "VITALOPS_LOG_LEVEL": "WARNING"})
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        build_home(home)
        store = SQLiteOnlineStore(home / "online.db")
        connection = sqlite3.connect(home / "online.db")
        demo_keys = [row[0] for row in connection.execute("SELECT DISTINCT patient_key FROM online_facts")]
        started = time.perf_counter()
        fill(store, demo_keys, PATIENTS)
        facts = connection.execute("SELECT count(*) FROM online_facts").fetchone()[0]
        print(f"online store: {store.patients():,} patients, {facts:,} facts "
              f"(filled in {time.perf_counter() - started:.0f} s)")

        def bare_sqlite(key: str) -> None:
            connection.execute("SELECT fact_id, row FROM online_facts WHERE patient_key = ?", (key,)).fetchall()

        served, raw = lookups(store, bare_sqlite, demo_keys, args.lookups)
        print(f"  sqlite facts_for: p50 {served['p50_ms']:.2f} ms, p99 {served['p99_ms']:.2f} ms (target < 5 ms); "
              f"bare SELECT p50 {raw['p50_ms']:.2f} ms, p99 {raw['p99_ms']:.2f} ms")
        record("online_store.sqlite.lookup_p99_ms", served["p99_ms"], better="lower", unit="ms",
               note=f"facts_for of a demo patient (~300 facts) in a store of {PATIENTS:,} patients, p99 of "
                    f"{args.lookups:,} (target < 5 ms); bare SELECT p99 {raw['p99_ms']:.2f} ms in the same run")
        record("online_store.sqlite.lookup_vs_bare_select", served["p50_ms"] / raw["p50_ms"], better="lower",
               unit="x baseline", note="facts_for median / bare indexed SELECT of the same rows, median")

        redis_url = os.environ.get("VITALOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        try:
            redis_store = RedisOnlineStore(redis_url, prefix=f"bench:{os.getpid()}:")
            redis_store.patients()
        except Exception as error:  # noqa: BLE001 - Redis is optional here
            print(f"  redis: not measured ({type(error).__name__})")
        else:
            try:
                rows = store.rows(demo_keys)
                redis_store.apply(rows, {})
                fill(redis_store, demo_keys, PATIENTS)
                client = redis_store._client  # noqa: SLF001 - the bare read of the same hash

                def bare_redis(key: str) -> None:
                    client.hgetall(redis_store._key(key))  # noqa: SLF001

                served_r, raw_r = lookups(redis_store, bare_redis, demo_keys, args.lookups)
                print(f"  redis facts_for: p50 {served_r['p50_ms']:.2f} ms, p99 {served_r['p99_ms']:.2f} ms; "
                      f"bare HGETALL p50 {raw_r['p50_ms']:.2f} ms, p99 {raw_r['p99_ms']:.2f} ms")
                record("online_store.redis.lookup_p99_ms", served_r["p99_ms"], better="lower", unit="ms",
                       note=f"facts_for of a demo patient in a Redis store of {PATIENTS:,} patients, p99 of "
                            f"{args.lookups:,} (target < 5 ms); bare HGETALL p99 {raw_r['p99_ms']:.2f} ms")
            finally:
                redis_store.clear()
                redis_store.close()
        store.close()
        connection.close()

        key = clinician_key(home)
        rng = random.Random(3)
        bodies = [{"site": rng.choice(["north", "south"]), "patient_key": rng.choice(demo_keys)} for _ in range(500)]
        env = dict(os.environ, VITALOPS_HOME=str(home))
        env.pop("VITALOPS_DATABASE_URL", None)
        common = {"total": args.requests, "concurrency": args.concurrency, "env": env}
        constant = _load.measure(__file__, "constant", "/constant", {}, label="constant", **common)
        predicted = _load.measure(__file__, "api", "/v1/models/deterioration/predict",
                                  {"Authorization": f"Bearer {key}"}, bodies=bodies, label="predict by key",
                                  **common)
    share = predicted["rate"] / constant["rate"]
    print(f"  predict by patient key: {predicted['rate']:.0f} requests/s ({share:.0%} of the constant endpoint), "
          f"p50 {predicted['p50_ms']:.1f} ms, p99 {predicted['p99_ms']:.1f} ms (target < 20 ms)")
    note = (f"REST predict by patient key from the SQLite online store ({PATIENTS:,} patients), demo deterioration "
            f"champion with explanation, concurrency {args.concurrency}, one worker")
    record("online_store.predict_by_key_p99_ms", predicted["p99_ms"], better="lower", unit="ms",
           note=note + " (target < 20 ms)")
    record("online_store.predict_by_key_vs_constant", share, better="higher", unit="x baseline",
           note=note + "; requests/s relative to a constant-response FastAPI endpoint in the same run")


if __name__ == "__main__":
    main()
