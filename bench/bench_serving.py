"""REST predict with a feature vector and its explanation, concurrency 16, one uvicorn worker, beside a
constant-response FastAPI endpoint driven by the same client in the same run; and what a shadow
challenger adds to the served request's latency.

Servers, each one uvicorn worker in its own process, driven in turn by the same client (an asyncio
httpx client with 16 requests in flight, a fixed number of requests after a warm-up):

- ``constant``: a FastAPI app whose one route returns a constant JSON object (the baseline);
- ``predict``: ``POST /v1/models/risk/predict`` with a 28-feature vector shaped like ward data
  (missing values, skewed labs), a logistic champion at the site: routed, scored, explained
  (exact contributions, counterfactuals), logged and audited in one transaction, with a
  RiskAssessment in the response;
- ``predict_shadow``: the same with a shadow challenger deployed beside the champion (scored and
  logged by the worker's shadow thread, off the response path).

What a shadow adds to the median response is measured with one request in flight (``--sequential``
requests to each of the two servers), where the shadow runs between the caller's requests as it
would in a worker that is not saturated; at concurrency 16 the worker is saturated and the shadow's
work shows as lost throughput instead, which is printed too.

    python bench/bench_serving.py [--requests 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import _load
import numpy as np
from _results import record

FEATURES = 28


def ward_matrix(n: int, seed: int) -> np.ndarray:
    """Rows shaped like ward features: vitals near normal with tails, skewed labs, 0/1 flags, gaps."""
    rng = np.random.default_rng(seed)
    vitals = rng.normal([85, 18, 125, 96, 37.0], [18, 4, 20, 3, 0.7], size=(n, 5))
    labs = rng.lognormal(mean=[0.3, 0.0, 2.2, 1.9], sigma=[0.6, 0.5, 0.4, 0.3], size=(n, 4))
    flags = (rng.random((n, 8)) < [0.1, 0.08, 0.15, 0.2, 0.05, 0.03, 0.02, 0.5]).astype(float)
    other = rng.normal(size=(n, FEATURES - 17))
    matrix = np.column_stack([vitals, labs, flags, other])
    matrix[rng.random(matrix.shape) < 0.15] = np.nan  # labs and vitals not measured in the window
    return matrix


def names() -> list[str]:
    base = ["heart_rate_last", "respiratory_rate_last", "systolic_bp_last", "spo2_last", "temperature_max_24h",
            "lactate_last", "creatinine_last", "wbc_last", "glucose_last"]
    flags = ["heart_failure", "copd", "ckd", "type2_diabetes", "sepsis_7d", "vasopressor_active", "dialysis", "female"]
    return base + flags + [f"other_{i}" for i in range(FEATURES - len(base) - len(flags))]


def seed_home(home: Path, shadow: bool) -> str:
    """A home with one site, a logistic champion (and a shadow when asked), a clinician's key."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from vitalops.artifacts import open_store, save_model
    from vitalops.auth import SYSTEM, Principal, Role
    from vitalops.auth.users import create_enrollment, create_user, redeem_enrollment
    from vitalops.core.settings import get_settings, write_secrets_file
    from vitalops.db import Database
    from vitalops.db.migrate import upgrade
    from vitalops.registry.deployments import apply_deployment, parse_mode
    from vitalops.registry.schemas import ModelCreate, Signature, VersionCreate
    from vitalops.registry.versions import create_model, create_version
    from vitalops.sites import create_site

    write_secrets_file(home)
    get_settings.cache_clear()
    settings = get_settings()
    database = Database(settings.db_url)
    upgrade(database)
    store = open_store(settings.artifacts_root)
    x = ward_matrix(5000, 1)
    y = (np.nan_to_num(x[:, 5], nan=1.0) + np.random.default_rng(2).normal(size=5000) > 2.0).astype(int)
    scientist = Principal(name="dana", roles=frozenset({Role.DATA_SCIENTIST}))
    with database.session() as session:
        create_site(session, SYSTEM, "north")
        create_model(session, scientist, ModelCreate(name="risk", intended_use="early warning",
                                                     clinical_owner="ward", target_population="adults"))
        for c in (1.0, 0.1):
            model = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                              ("scale", StandardScaler()), ("model", LogisticRegression(C=c))]).fit(x, y)
            bundle = save_model(store, model, flavor="sklearn", feature_names=names())
            create_version(session, scientist, "risk", VersionCreate(
                source="registered", state="validated", dataset_fingerprint="f" * 64, definitions_version="d",
                code_version="bench", estimator="logistic_regression", flavor="sklearn",
                signature=Signature.of(names()), artifact_sha256=bundle.sha256, threshold=0.3,
                report={}, report_hash="0" * 64))
        operator = Principal(name="omar", roles=frozenset({Role.OPERATOR}), credential="bench")
        apply_deployment(session, actor=operator, name="risk", number=1, site="north", mode=parse_mode("champion"),
                         reason="bench")
        if shadow:
            apply_deployment(session, actor=operator, name="risk", number=2, site="north",
                             mode=parse_mode("shadow"), reason="bench")
        create_user(session, SYSTEM, "casey", "clinician")
        _, token = create_enrollment(session, SYSTEM, "casey")
        _, key = redeem_enrollment(session, token)
    database.dispose()
    return key


def measure(kind: str, home: Path, path: str, bodies: list[dict[str, Any]] | None, headers: dict[str, str],
            args: argparse.Namespace, *, concurrency: int | None = None, total: int | None = None) -> dict[str, float]:
    label = kind if concurrency is None else f"{kind} (c={concurrency})"
    return _load.measure(__file__, kind, path, headers, total=total or args.requests,
                         concurrency=concurrency or args.concurrency, bodies=bodies,
                         env=dict(os.environ, VITALOPS_HOME=str(home)), label=label)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=400)
    args = _load.arguments(parser)
    if args is None:
        return
    matrix = ward_matrix(200, 7)
    feature_names = names()
    bodies = [
        {"site": "north", "patient_key": f"{i:064x}",
         "features": {n: (None if np.isnan(v) else float(v)) for n, v in zip(feature_names, row, strict=True)}}
        for i, row in enumerate(matrix)
    ]
    with tempfile.TemporaryDirectory() as folder:
        os.environ.update({"VITALOPS_ENVIRONMENT": "test", "VITALOPS_LOG_LEVEL": "WARNING"})
        os.environ.pop("VITALOPS_DATABASE_URL", None)
        homes = {kind: Path(folder) / kind for kind in ("predict", "predict_shadow")}
        keys = {}
        for kind, home in homes.items():
            os.environ["VITALOPS_HOME"] = str(home)
            keys[kind] = seed_home(home, shadow=kind == "predict_shadow")
        print(f"POST /v1/models/risk/predict ({FEATURES} features, explanation, log and audit) on SQLite, "
              f"{args.requests:,} requests at concurrency {args.concurrency}, one worker each:")
        constant = measure("constant", homes["predict"], "/constant", None, {}, args)
        served = measure("predict", homes["predict"], "/v1/models/risk/predict", bodies,
                         {"Authorization": f"Bearer {keys['predict']}"}, args)
        shadowed = measure("predict_shadow", homes["predict_shadow"], "/v1/models/risk/predict", bodies,
                           {"Authorization": f"Bearer {keys['predict_shadow']}"}, args)
        alone = measure("predict", homes["predict"], "/v1/models/risk/predict", bodies,
                        {"Authorization": f"Bearer {keys['predict']}"}, args, concurrency=1, total=args.sequential)
        beside = measure("predict_shadow", homes["predict_shadow"], "/v1/models/risk/predict", bodies,
                         {"Authorization": f"Bearer {keys['predict_shadow']}"}, args, concurrency=1,
                         total=args.sequential)
    share = served["rate"] / constant["rate"]
    added = beside["p50_ms"] - alone["p50_ms"]
    print(f"  predict: {share:.0%} of the constant endpoint's requests/s (target >= 50%), p99 "
          f"{served['p99_ms']:.1f} ms (target < 50 ms); a shadow adds {added:+.2f} ms to the median with one "
          f"request in flight (target < 2 ms) and costs {1 - shadowed['rate'] / served['rate']:.0%} of the "
          "saturated worker's throughput")
    note = f"REST predict, {FEATURES} features with explanation, SQLite, concurrency {args.concurrency}, one worker"
    record("serving.predict_c16_vs_constant", share, better="higher", unit="x baseline",
           note=note + "; requests/s relative to a constant-response FastAPI endpoint in the same run")
    record("serving.predict_c16_p99_ms", served["p99_ms"], better="lower", unit="ms", note=note + "; p99 latency")
    record("serving.shadow_added_p50_ms", max(added, 0.01), better="lower", unit="ms",
           note="REST predict, one request in flight; median latency with a shadow challenger minus without")


if __name__ == "__main__":
    main()
