"""Model registration time (excluding validation) and full PCCP check time.

Registration = serialize the fitted model deterministically, write the content-addressed
artifact and manifest, and create the version (with its audit events) in one transaction.
Baseline, measured in the same run: writing the raw skops bytes to a file and hashing them
with sha256 (the least any registry must do). MLflow is not installed here; the architecture
notes record about 6 s for its default log-and-register on this machine. Target: under 0.5 s.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import skops.io as sio
from _results import record

from vitalops.artifacts import open_store, save_model
from vitalops.auth import SYSTEM, Principal, Role
from vitalops.core.settings import get_settings
from vitalops.db import Database
from vitalops.db.migrate import upgrade
from vitalops.governance.approvals import approve_version
from vitalops.governance.deploy import deploy_version
from vitalops.governance.gate import run_pccp_check
from vitalops.governance.pccp import decide_pccp, propose_pccp
from vitalops.registry.schemas import ModelCreate, Signature, VersionCreate
from vitalops.registry.versions import create_model, create_version
from vitalops.sites import create_site
from vitalops.training.datasets import freeze_dataset, labelled_rows
from vitalops.training.estimators import build_estimator, fit_estimator

SCIENTIST = Principal(name="dana", roles=frozenset({Role.DATA_SCIENTIST}))
APPROVER = Principal(name="alex", roles=frozenset({Role.APPROVER}), credential="key:bench", personal=True)
N_FEATURES = 30


def frozen_table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    label = (x[:, :5].sum(axis=1) + rng.normal(size=n) * 2 > 2).astype(np.int8)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pa.table(
        {
            "patient_key": [f"p{i}" for i in range(n)],
            "site": [("a", "b", "c")[i % 3] for i in range(n)],
            "encounter_key": [f"e{i}" for i in range(n)],
            "index_time": pa.array([start + timedelta(minutes=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
            "label": pa.array(label, pa.int8()),
            "label_known_at": pa.array(
                [start + timedelta(days=2, minutes=i) for i in range(n)], pa.timestamp("us", tz="UTC")
            ),
            "attr_sex": ["female" if i % 2 else "male" for i in range(n)],
            "attr_age": [float(20 + i % 70) for i in range(n)],
            "attr_race": ["unknown"] * n,
            "attr_ethnicity": ["unknown"] * n,
            **{f"f{j:02d}": x[:, j] for j in range(N_FEATURES)},
        }
    )


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="vitalops-bench-"))
    os.environ["VITALOPS_HOME"] = str(home)
    get_settings.cache_clear()
    settings = get_settings()
    database = Database(settings.db_url)
    upgrade(database)
    store = open_store(settings.artifacts_root)
    names = [f"f{j:02d}" for j in range(N_FEATURES)]
    table = frozen_table(20_000, 1)
    rows = labelled_rows(table, names)

    models = []
    for kind in ("logistic_regression", "lightgbm"):
        estimator, spec = build_estimator(kind, {}, 0)
        models.append((kind, spec.flavor, fit_estimator(estimator, rows.features, rows.labels)))

    with database.session() as session:
        create_model(
            session,
            SCIENTIST,
            ModelCreate(
                name="bench",
                intended_use="benchmark",
                clinical_owner="ops",
                target_population="synthetic",
                approvals_required=1,
            ),
        )
    for kind, flavor, model in models:
        baseline, ours = [], []
        for repeat in range(5):
            started = time.perf_counter()
            content = sio.dumps(model) if flavor == "sklearn" else model.booster_.model_to_string().encode()
            path = home / f"raw-{kind}-{repeat}.bin"
            path.write_bytes(content)
            hashlib.sha256(content).hexdigest()
            baseline.append(time.perf_counter() - started)

            started = time.perf_counter()
            bundle = save_model(store, model, flavor=flavor, feature_names=names)
            with database.session() as session:
                create_version(
                    session,
                    SCIENTIST,
                    "bench",
                    VersionCreate(
                        source="registered",
                        state="validated",
                        dataset_fingerprint="f" * 64,
                        definitions_version="bench",
                        code_version="bench",
                        estimator=kind,
                        flavor=flavor,
                        signature=Signature.of(names),
                        artifact_sha256=bundle.sha256,
                        threshold=0.5,
                        report={"kind": kind},
                        report_hash="0" * 64,
                    ),
                )
            ours.append(time.perf_counter() - started)
        print(
            f"registration {kind:20s} median {statistics.median(ours) * 1000:7.1f} ms   "
            f"baseline raw write + sha256 {statistics.median(baseline) * 1000:7.1f} ms   target < 500 ms"
        )
        record(f"registry.register_{kind}_vs_raw_write", statistics.median(ours) / statistics.median(baseline),
               better="lower", unit="x baseline",
               note="save_model + create_version, median of 5 / writing and hashing the model's raw bytes")

    uri, fingerprint = freeze_dataset(store, frozen_table(20_000, 2))
    with database.session() as session:
        for code in ("a", "b", "c"):
            create_site(session, SYSTEM, code)
    plan = propose_pccp(
        database,
        SCIENTIST,
        "bench",
        f"""model: bench
allowed_modifications: [retrain]
frozen_test_set: {{uri: "{uri}", fingerprint: "{fingerprint}"}}
acceptance: {{auroc_low: 0.6, sensitivity_low: 0.5}}
subgroups: {{attributes: [sex, age_band]}}
n_resamples: 1000
""",
    )
    decide_pccp(database, APPROVER, "bench", plan.number, decision="approve", reason="bench")
    approve_version(database, APPROVER, "bench", 1, reason="bench")
    run_pccp_check(database, APPROVER, "bench", 1)
    deploy_version(database, APPROVER, "bench", 1, sites=["a", "b", "c"], mode="champion")
    started = time.perf_counter()
    check = run_pccp_check(database, APPROVER, "bench", 6)
    elapsed = time.perf_counter() - started
    print(
        f"full PCCP check (20,000 frozen rows, 1,000 resamples, champion logistic vs lightgbm): {elapsed:.2f} s "
        f"({len(check.criteria)} criteria, passed={check.passed})"
    )
    record("registry.pccp_check_seconds", elapsed, better="lower", unit="s",
           note="full PCCP check, 20,000 frozen rows, 1,000 resamples (no same-run baseline)")


if __name__ == "__main__":
    main()
