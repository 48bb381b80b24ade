from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from vitalops.artifacts import load_bundle_model, load_predictor, open_store, read_bundle
from vitalops.auth import Principal, Role
from vitalops.errors import InvalidInput
from vitalops.registry.versions import list_versions
from vitalops.training.datasets import freeze_dataset, labelled_rows
from vitalops.training.trainer import train_from_spec

SCIENTIST = Principal(name="dana", roles=frozenset({Role.DATA_SCIENTIST}))
FEATURES = ["heart_rate", "lactate", "resp_rate"]


def dataset(seed: int = 0, n: int = 900, *, one_class: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    x[rng.random((n, 3)) < 0.05] = np.nan
    risk = 1.3 * np.nan_to_num(x[:, 0]) + 0.9 * np.nan_to_num(x[:, 1]) + rng.normal(size=n)
    label = np.zeros(n, dtype=np.int8) if one_class else (risk > 1.0).astype(np.int8)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    labels = pa.array([None if i % 50 == 0 else int(v) for i, v in enumerate(label)], pa.int8())  # some censored
    return pa.table(
        {
            "patient_key": [f"p{i}" for i in range(n)],
            "site": [("A", "B", "C")[i % 3] for i in range(n)],
            "encounter_key": [f"e{i}" for i in range(n)],
            "index_time": pa.array([start + timedelta(hours=4 * i) for i in range(n)], pa.timestamp("us", tz="UTC")),
            "label": labels,
            "label_known_at": pa.array(
                [start + timedelta(hours=4 * i + 48) for i in range(n)], pa.timestamp("us", tz="UTC")
            ),
            "attr_sex": ["female" if i % 2 else "male" for i in range(n)],
            "attr_age": [float(25 + i % 65) for i in range(n)],
            "attr_race": ["white" if i % 4 else "black" for i in range(n)],
            "attr_ethnicity": ["unknown"] * n,
            **{name: x[:, j] for j, name in enumerate(FEATURES)},
        }
    )


def write_spec(folder, uri, *, estimator="logistic_regression", minimums="{auroc_low: 0.6}", extra=""):
    path = folder / "spec.yaml"
    path.write_text(f"""
model:
  name: deterioration
  intended_use: early warning of clinical deterioration within 24 hours
  clinical_owner: Rapid response team
  target_population: adult inpatients
  risk_class: high
dataset: {{uri: "{uri}"{extra}}}
estimator: {estimator}
split: {{train_fraction: 0.6, external_sites: [C]}}
seed: 11
threshold: {{kind: sensitivity, value: 0.8}}
validation: {{n_resamples: 50, small_group_min: 20}}
minimums: {minimums}
""")
    return path


def test_train_registers_a_validated_version_deterministically(database, settings, tmp_path):
    store = open_store(settings.artifacts_root)
    uri, fingerprint = freeze_dataset(store, dataset())
    spec = write_spec(tmp_path, uri)
    first = train_from_spec(database, SCIENTIST, spec)
    second = train_from_spec(database, SCIENTIST, spec)
    assert first.version.state == "validated" and first.failures == []
    assert first.version.artifact_sha256 == second.version.artifact_sha256
    assert first.version.dataset_fingerprint == fingerprint
    assert second.version.number == 2 and first.version.code_version.startswith("vitalops")
    assert first.evaluation.report.external[0].site == "C"
    # The threshold is picked by the rule on the training rows, never on the rows that judge it.
    assert first.evaluation.report.threshold_source == "training"

    predictor = load_predictor(first.version.artifact_sha256, store=store)
    model = load_bundle_model(store, read_bundle(store, first.version.artifact_sha256))
    rows = labelled_rows(dataset(), FEATURES)
    assert np.max(np.abs(predictor.predict_proba(rows.features) - model.predict_proba(rows.features)[:, 1])) <= 1e-12


def test_failing_minimums_register_a_draft(database, settings, tmp_path):
    uri, _ = freeze_dataset(open_store(settings.artifacts_root), dataset())
    result = train_from_spec(database, SCIENTIST, write_spec(tmp_path, uri, minimums="{auroc_low: 0.99}"))
    assert result.version.state == "draft" and result.failures == ["auroc_low"]


@pytest.mark.parametrize(
    ("table_kwargs", "spec_kwargs", "message"),
    [
        ({}, {"estimator": "random_forest"}, "unknown estimator"),
        ({"one_class": True}, {}, "only one outcome class"),
        ({}, {"extra": ", exclude_features: [creatinine]"}, "unknown features"),
    ],
)
def test_bad_input_registers_nothing(database, settings, tmp_path, table_kwargs, spec_kwargs, message):
    uri, _ = freeze_dataset(open_store(settings.artifacts_root), dataset(**table_kwargs))
    with pytest.raises(InvalidInput) as caught:
        train_from_spec(database, SCIENTIST, write_spec(tmp_path, uri, **spec_kwargs))
    assert message in caught.value.message
    with database.session() as session:
        from vitalops.registry.versions import list_models

        assert list_models(session) == [] or list_versions(session, "deterioration") == []
