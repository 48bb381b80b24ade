"""Explanations are exact: contributions plus the base value equal the model's raw score, for every
method, and a counterfactual re-scores the model with one factor at its normal value."""

from __future__ import annotations

import lightgbm
import numpy as np
import pytest
import xgboost
from scipy.special import logit
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from vitalops.artifacts import load_predictor, open_store, save_model
from vitalops.serving.explain import FeatureMeaning, contributions, explain_row

NAMES = ("heart_rate_last", "lactate_last", "age")


def _data(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.normal(90, 20, n), rng.gamma(2.0, 1.0, n), rng.uniform(20, 90, n)])
    x[rng.random(n) < 0.1, 1] = np.nan  # missing lactate
    risk = 0.04 * (x[:, 0] - 90) + 0.8 * np.nan_to_num(x[:, 1], nan=1.0) + 0.02 * (x[:, 2] - 50) - 2.5
    return x, (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)


@pytest.fixture
def store(tmp_path):
    return open_store(tmp_path / "artifacts")


def _models(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[str, object]]:
    linear = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                       ("scale", StandardScaler()), ("model", LogisticRegression())]).fit(x, y)
    gbm = lightgbm.train({"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1},
                         lightgbm.Dataset(x, y), num_boost_round=30)
    xgb = xgboost.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                        xgboost.DMatrix(x, label=y), num_boost_round=30)
    return {"linear.exact/1": ("sklearn", linear), "lightgbm.treeshap/1": ("lightgbm", gbm),
            "xgboost.treeshap/1": ("xgboost", xgb)}


def test_contributions_add_up_to_the_raw_score_for_every_method(store):
    x, y = _data()
    for method, (flavor, model) in _models(x, y).items():
        predictor = load_predictor(save_model(store, model, flavor=flavor, feature_names=NAMES).sha256, store=store)
        parts, base = contributions(predictor, x[:50])
        raw = logit(predictor.predict_proba(x[:50]))
        np.testing.assert_allclose(parts.sum(axis=1) + base, raw, atol=1e-6, err_msg=method)
        explanation = explain_row(predictor, x[0], {})
        assert explanation.method == method and len(explanation.factors) == 3
        assert explanation.raw_score == pytest.approx(raw[0], abs=1e-6)


def test_counterfactuals_set_a_modifiable_factor_to_normal_and_rescore(store):
    x, y = _data()
    model = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                      ("scale", StandardScaler()), ("model", LogisticRegression())]).fit(x, y)
    predictor = load_predictor(save_model(store, model, flavor="sklearn", feature_names=NAMES).sha256, store=store)
    meanings = {"heart_rate_last": FeatureMeaning("/min", "heart_rate", True),
                "lactate_last": FeatureMeaning("mmol/L", "lactate", True),
                "age": FeatureMeaning("a", None, False)}
    row = np.asarray([140.0, 6.0, 85.0])  # tachycardic, high lactate, old
    explanation = explain_row(predictor, row, meanings)
    found = {c.feature: c for c in explanation.counterfactuals}
    assert set(found) == {"heart_rate_last", "lactate_last"}  # age is not modifiable
    assert found["heart_rate_last"].normal_value == 90 and found["lactate_last"].normal_value == 2.0
    lowered = row.copy()
    lowered[1] = 2.0
    assert found["lactate_last"].risk_if_normal == pytest.approx(predictor.predict_proba(lowered)[0], abs=1e-12)
    assert found["lactate_last"].risk_if_normal < predictor.predict_proba(row)[0]
    assert {f.feature: f.unit for f in explanation.factors}["lactate_last"] == "mmol/L"
    normal = explain_row(predictor, np.asarray([70.0, 1.0, 85.0]), meanings)
    assert normal.counterfactuals == []  # nothing to bring back to normal
