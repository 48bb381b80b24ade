from __future__ import annotations

import collections

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from vitalops.artifacts import load_bundle_model, load_predictor, open_store, read_bundle, save_model
from vitalops.artifacts.formats import dump_model
from vitalops.errors import IntegrityError

NAMES = ("heart_rate", "lactate", "age")


@pytest.fixture
def rows():
    rng = np.random.default_rng(7)
    features = rng.normal(size=(400, 3))
    label = (features[:, 0] + 0.5 * features[:, 1] + rng.normal(size=400) > 0.3).astype(int)
    features[rng.random(features.shape) < 0.1] = np.nan
    return features, label


def _logistic():
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(max_iter=500)),
        ]
    )


def test_logistic_fast_path_equals_predict_proba(tmp_path, rows):
    features, label = rows
    model = _logistic().fit(features, label)
    store = open_store(tmp_path)
    bundle = save_model(store, model, flavor="sklearn", feature_names=NAMES)
    predictor = load_predictor(bundle.sha256, store=store)
    assert predictor.kind == "linear_logistic"
    expected = model.predict_proba(features)[:, 1]
    assert np.max(np.abs(predictor.predict_proba(features) - expected)) <= 1e-12
    reloaded = load_bundle_model(store, read_bundle(store, bundle.sha256))
    assert np.array_equal(reloaded.predict_proba(features), model.predict_proba(features))


def test_sklearn_serialization_is_deterministic(rows):
    features, label = rows
    first = HistGradientBoostingClassifier(max_iter=20, random_state=3).fit(features, label)
    second = HistGradientBoostingClassifier(max_iter=20, random_state=3).fit(features, label)
    assert dump_model(first, "sklearn") == dump_model(second, "sklearn")
    assert dump_model(_logistic().fit(features, label), "sklearn") == dump_model(
        _logistic().fit(features, label), "sklearn"
    )


def test_boosters_fast_path_and_determinism(tmp_path, rows):
    import lightgbm
    import xgboost

    features, label = rows
    store = open_store(tmp_path)
    for flavor, make in (
        (
            "lightgbm",
            lambda: lightgbm.LGBMClassifier(n_estimators=20, n_jobs=1, verbose=-1, deterministic=True),
        ),
        ("xgboost", lambda: xgboost.XGBClassifier(n_estimators=20, n_jobs=1, random_state=0)),
    ):
        model = make().fit(features, label)
        bundle = save_model(store, model, flavor=flavor, feature_names=NAMES)
        again = save_model(store, make().fit(features, label), flavor=flavor, feature_names=NAMES)
        assert again.sha256 == bundle.sha256
        scores = load_predictor(bundle.sha256, store=store).predict_proba(features)
        assert np.max(np.abs(scores - model.predict_proba(features)[:, 1])) <= 1e-12


def test_untrusted_skops_type_is_refused(tmp_path, rows):
    import skops.io as sio

    from vitalops.artifacts.formats import load_model

    features, label = rows
    model = _logistic().fit(features, label)
    model.named_steps["model"].custom_hook = collections.Counter()  # a type skops does not trust
    with pytest.raises(IntegrityError) as caught:
        load_model(sio.dumps(model), "sklearn")
    assert "not trusted" in caught.value.message
