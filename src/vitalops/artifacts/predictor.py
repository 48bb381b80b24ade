"""Predictors: the cheap path that gives exactly the fitted model's probabilities.

Serving scores one row at a time, where scikit-learn's ``predict_proba`` costs far more than the
arithmetic. Each predictor here returns the positive-class probability as float64 and is tested to
equal the estimator's own ``predict_proba[:, 1]`` within 1e-12.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any

import numpy as np
from scipy.special import expit

from vitalops.errors import InvalidInput


class Predictor(ABC):
    """Scores a float64 matrix whose columns are ``feature_names`` in order (NaN = missing)."""

    kind: str = "predictor"

    def __init__(self, feature_names: tuple[str, ...]) -> None:
        self.feature_names = feature_names

    @abstractmethod
    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """The positive-class probability per row, shape (n,), float64."""

    @cached_property
    def accepts_missing(self) -> bool:
        """Whether a missing value (NaN) can be scored: found once by scoring a row of NaN (a model
        that cannot take one raises, or answers with no probability)."""
        probe = np.full((1, len(self.feature_names)), np.nan)
        try:
            scores = self.predict_proba(probe)
        except Exception:  # noqa: BLE001 - any failure on the probe means "cannot"
            return False
        return bool(np.all(np.isfinite(scores)))

    def _matrix(self, features: np.ndarray) -> np.ndarray:
        matrix = np.asarray(features, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.shape[1] != len(self.feature_names):

            raise InvalidInput(
                f"the model expects {len(self.feature_names)} features, got {matrix.shape[1]} columns"
            )
        return matrix


class LinearLogisticPredictor(Predictor):
    """Median imputation, standard scaling and a logistic model as three numpy operations."""

    kind = "linear_logistic"

    def __init__(
        self,
        feature_names: tuple[str, ...],
        *,
        medians: np.ndarray,
        mean: np.ndarray,
        scale: np.ndarray,
        coef: np.ndarray,
        intercept: float,
    ) -> None:
        super().__init__(feature_names)
        self.medians = medians
        self.mean = mean
        self.scale = scale
        self.coef = coef.reshape(-1, 1)
        self.intercept = intercept

    @classmethod
    def from_params(cls, feature_names: tuple[str, ...], params: dict[str, Any]) -> LinearLogisticPredictor:
        return cls(
            feature_names,
            medians=np.asarray(params["medians"], dtype=np.float64),
            mean=np.asarray(params["mean"], dtype=np.float64),
            scale=np.asarray(params["scale"], dtype=np.float64),
            coef=np.asarray(params["coef"], dtype=np.float64),
            intercept=float(params["intercept"]),
        )

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        # The same operations in the same order as SimpleImputer, StandardScaler and LogisticRegression.
        matrix = self._matrix(features).copy()
        missing = np.isnan(matrix)
        if missing.any():
            matrix[missing] = np.take(self.medians, np.nonzero(missing)[1])
        matrix -= self.mean
        matrix /= self.scale
        # einsum, not a BLAS product: BLAS picks kernels by the matrix's shape, so a row's last bits
        # would depend on the rows scored beside it; a batch row must equal the row scored alone.
        decision = np.einsum("ij,j->i", matrix, self.coef.ravel()) + self.intercept
        return np.asarray(expit(decision), dtype=np.float64)


class LightGBMPredictor(Predictor):
    kind = "lightgbm_booster"

    def __init__(self, feature_names: tuple[str, ...], booster: Any) -> None:
        super().__init__(feature_names)
        self.booster = booster

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(self._matrix(features), num_threads=1), dtype=np.float64)


class XGBoostPredictor(Predictor):
    kind = "xgboost_booster"

    def __init__(self, feature_names: tuple[str, ...], booster: Any) -> None:
        super().__init__(feature_names)
        self.booster = booster

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        scores = self.booster.inplace_predict(self._matrix(features))
        return np.asarray(scores, dtype=np.float64).reshape(-1)


class EstimatorPredictor(Predictor):
    """Any scikit-learn classifier: its own ``predict_proba``."""

    kind = "estimator"

    def __init__(self, feature_names: tuple[str, ...], estimator: Any) -> None:
        super().__init__(feature_names)
        self.estimator = estimator

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(self._matrix(features))[:, 1], dtype=np.float64)


class OnnxPredictor(Predictor):
    """An ONNX classifier: the first output with two probability columns, or a single score column."""

    kind = "onnx"

    def __init__(self, feature_names: tuple[str, ...], session: Any) -> None:
        super().__init__(feature_names)
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        matrix = self._matrix(features).astype(np.float32)
        for output in self.session.run(None, {self.input_name: matrix}):
            if isinstance(output, list) and output and isinstance(output[0], dict):
                return np.asarray([row.get(1, row.get("1", 0.0)) for row in output], dtype=np.float64)
            array = np.asarray(output)
            if array.dtype.kind == "f" and array.ndim == 2 and array.shape[1] == 2:
                return array[:, 1].astype(np.float64)

        raise InvalidInput("the ONNX model has no output with positive-class probabilities")


def linear_logistic_params(model: Any) -> dict[str, Any] | None:
    """The fast-path parameters of a median-impute, scale, logistic Pipeline; None for any other model."""
    steps = getattr(model, "steps", None)
    if not steps or len(steps) != 3:
        return None
    imputer, scaler, classifier = (step for _, step in steps)
    if type(imputer).__name__ != "SimpleImputer" or getattr(imputer, "strategy", None) != "median":
        return None
    if type(scaler).__name__ != "StandardScaler" or type(classifier).__name__ != "LogisticRegression":
        return None
    if getattr(imputer, "add_indicator", False) or len(classifier.classes_) != 2:
        return None
    if getattr(imputer, "indicator_", None) is not None or not getattr(imputer, "keep_empty_features", False):
        return None
    n = len(imputer.statistics_)
    mean = scaler.mean_ if scaler.mean_ is not None else np.zeros(n)
    scale = scaler.scale_ if scaler.scale_ is not None else np.ones(n)
    return {
        "medians": [float(v) for v in imputer.statistics_],
        "mean": [float(v) for v in mean],
        "scale": [float(v) for v in scale],
        "coef": [float(v) for v in classifier.coef_[0]],
        "intercept": float(classifier.intercept_[0]),
    }
