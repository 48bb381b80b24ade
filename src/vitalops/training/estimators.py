"""The estimators a training spec may name: a factory dict from name to builder.

Every builder pins threads to one (a loaded 2-core host fits LightGBM 50x slower with default
threads) and seeds its randomness, so that the same spec and data give the same artifact bytes.
Logistic regression carries its own median imputation and scaling: missing values stay missing
in the data, and how they are filled is part of the recorded model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vitalops.core.extras import import_extra
from vitalops.errors import InvalidInput


@dataclass(frozen=True)
class EstimatorKind:
    name: str
    flavor: str
    build: Callable[[dict[str, Any], int], Any]


def _logistic_regression(params: dict[str, Any], seed: int) -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    settings = {"max_iter": 2000, **params}
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(random_state=seed, **settings)),
        ]
    )


def _hist_gradient_boosting(params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed, **params)


def _lightgbm(params: dict[str, Any], seed: int) -> Any:
    lightgbm = import_extra("lightgbm")
    settings = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, **params}
    return lightgbm.LGBMClassifier(
        random_state=seed, n_jobs=1, deterministic=True, force_row_wise=True, verbose=-1, **settings
    )


def _xgboost(params: dict[str, Any], seed: int) -> Any:
    xgboost = import_extra("xgboost")
    settings = {"n_estimators": 200, "learning_rate": 0.05, "max_depth": 4, **params}
    return xgboost.XGBClassifier(random_state=seed, n_jobs=1, tree_method="hist", **settings)


ESTIMATORS: dict[str, EstimatorKind] = {
    "logistic_regression": EstimatorKind("logistic_regression", "sklearn", _logistic_regression),
    "hist_gradient_boosting": EstimatorKind("hist_gradient_boosting", "sklearn", _hist_gradient_boosting),
    "lightgbm": EstimatorKind("lightgbm", "lightgbm", _lightgbm),
    "xgboost": EstimatorKind("xgboost", "xgboost", _xgboost),
}


def get_estimator_kind(name: str) -> EstimatorKind:
    """The estimator named ``name``; InvalidInput listing the valid names otherwise."""
    kind = ESTIMATORS.get(name)
    if kind is None:
        raise InvalidInput(
            f"unknown estimator '{name}'; valid: {', '.join(sorted(ESTIMATORS))}",
            details={"valid": sorted(ESTIMATORS)},
        )
    return kind


def build_estimator(name: str, hyperparameters: dict[str, Any], seed: int) -> tuple[Any, EstimatorKind]:
    """A fresh, unfitted estimator; InvalidInput when a hyperparameter is not one the estimator takes."""
    kind = get_estimator_kind(name)
    try:
        estimator = kind.build(dict(hyperparameters), seed)
    except TypeError as exc:
        raise InvalidInput(f"hyperparameters do not fit estimator '{name}': {exc}") from exc
    return estimator, kind


def fit_estimator(estimator: Any, features: Any, labels: Any) -> Any:
    """Fit with every native thread pool held to one thread."""
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(limits=1):
            return estimator.fit(features, labels)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"the estimator could not be fitted: {type(exc).__name__}: {exc}") from exc
