"""Explanations of one prediction: each feature's exact contribution to the raw (log-odds) score, the
top factors with their values and units, and counterfactuals for the modifiable ones.

Methods, versioned with the model version that is explained:

- ``linear.exact/1``: for the median-impute, scale, logistic fast path, feature j contributes
  ``coef_j * (x_j - mean_j) / scale_j`` (x imputed); the base value is the intercept. Exact.
- ``lightgbm.treeshap/1``: LightGBM's own TreeSHAP (``pred_contrib``); base value = expected value.
- ``xgboost.treeshap/1``: XGBoost's own TreeSHAP (``pred_contribs``); base value = the bias term.
- ``none``: any other model; the score is served without factors.

In every method the contributions plus the base value equal the model's raw score, which is
tested. A counterfactual sets one modifiable factor (a measurement's last, minimum, maximum or
mean) to the nearest value of its concept's adult reference range and re-scores the model: "the
risk if this factor were normal", everything else unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from vitalops.artifacts.predictor import LightGBMPredictor, LinearLogisticPredictor, Predictor, XGBoostPredictor
from vitalops.core.extras import import_extra
from vitalops.features.definitions import DatasetSpec
from vitalops.terminology import Terminology
from vitalops.terminology.normal_ranges import normal_ranges

TOP_FACTORS = 5
TOP_COUNTERFACTUALS = 3
#: Aggregations of a measurement whose value a clinician can move toward normal.
MODIFIABLE_AGGREGATIONS = frozenset({"last", "min", "max", "mean"})


class Factor(BaseModel):
    feature: str
    value: float | None
    unit: str | None
    contribution: float


class Counterfactual(BaseModel):
    feature: str
    value: float
    normal_value: float
    unit: str | None
    risk_if_normal: float


class Explanation(BaseModel):
    method: str
    base_value: float | None
    raw_score: float | None
    factors: list[Factor]
    counterfactuals: list[Counterfactual]


@dataclass(frozen=True)
class FeatureMeaning:
    """What a feature is, for reading an explanation: its unit and the concept it is a value of."""

    unit: str | None
    concept: str | None
    modifiable: bool


def feature_meanings(spec: DatasetSpec | None, terminology: Terminology | None) -> dict[str, FeatureMeaning]:
    """Unit and concept of each feature of ``spec`` (empty without a spec: factors carry no unit)."""
    if spec is None:
        return {}
    meanings: dict[str, FeatureMeaning] = {}
    for feature in spec.features:
        kind = getattr(feature, "kind", "")
        concept = getattr(feature, "concept", None)
        agg = getattr(feature, "agg", None)
        unit: str | None = None
        if kind == "measurement" and concept is not None and terminology is not None:
            canonical = terminology.concept(concept).canonical_unit
            unit = {"slope": f"{canonical}/h" if canonical else None, "time_since_last": "h", "count": "{count}",
                    "exists": None}.get(str(agg), canonical)
        elif kind == "age":
            unit = "a"
        elif kind == "length_of_stay":
            unit = "h"
        modifiable = kind == "measurement" and agg in MODIFIABLE_AGGREGATIONS and concept in normal_ranges()
        meanings[feature.name] = FeatureMeaning(unit, concept, modifiable)
    return meanings


def method_of(predictor: Predictor) -> str:
    """The explanation method (with its version) this predictor is explained by."""
    if isinstance(predictor, LinearLogisticPredictor):
        return "linear.exact/1"
    if isinstance(predictor, LightGBMPredictor):
        return "lightgbm.treeshap/1"
    if isinstance(predictor, XGBoostPredictor):
        return "xgboost.treeshap/1"
    return "none"


def contributions(predictor: Predictor, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-row feature contributions (n x p) and base values (n,) in log-odds; None when the model has
    no exact method."""
    rows = np.asarray(matrix, dtype=np.float64).reshape(-1, len(predictor.feature_names))
    if isinstance(predictor, LinearLogisticPredictor):
        imputed = rows.copy()
        missing = np.isnan(imputed)
        if missing.any():
            imputed[missing] = np.take(predictor.medians, np.nonzero(missing)[1])
        scaled = (imputed - predictor.mean) / predictor.scale
        values = scaled * predictor.coef.ravel()
        return values, np.full(rows.shape[0], predictor.intercept)
    if isinstance(predictor, LightGBMPredictor):
        raw = np.asarray(predictor.booster.predict(rows, pred_contrib=True, num_threads=1), dtype=np.float64)
        return raw[:, :-1], raw[:, -1]
    if isinstance(predictor, XGBoostPredictor):
        xgboost = import_extra("xgboost")
        raw = np.asarray(predictor.booster.predict(xgboost.DMatrix(rows), pred_contribs=True), dtype=np.float64)
        return raw[:, :-1], raw[:, -1]
    return None


def explain_row(
    predictor: Predictor,
    row: np.ndarray,
    meanings: dict[str, FeatureMeaning],
    *,
    top: int = TOP_FACTORS,
) -> Explanation:
    """The explanation of one scored row (``row`` in the predictor's feature order; NaN = missing)."""
    method = method_of(predictor)
    values = np.asarray(row, dtype=np.float64).reshape(1, -1)
    found = contributions(predictor, values)
    if found is None:
        return Explanation(method=method, base_value=None, raw_score=None, factors=[], counterfactuals=[])
    parts, base = found
    order = np.argsort(-np.abs(parts[0]), kind="stable")[:top]
    names = predictor.feature_names
    factors = [
        Factor(
            feature=names[j],
            value=_finite(values[0, j]),
            unit=meanings.get(names[j], FeatureMeaning(None, None, False)).unit,
            contribution=float(parts[0, j]),
        )
        for j in order
    ]
    return Explanation(
        method=method,
        base_value=float(base[0]),
        raw_score=float(base[0] + parts[0].sum()),
        factors=factors,
        counterfactuals=_counterfactuals(predictor, values, parts[0], meanings),
    )


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


def _counterfactuals(
    predictor: Predictor, values: np.ndarray, parts: np.ndarray, meanings: dict[str, FeatureMeaning]
) -> list[Counterfactual]:
    ranges = normal_ranges()
    names = predictor.feature_names
    candidates: list[tuple[int, float]] = []
    for j in np.argsort(-parts, kind="stable"):  # the factors raising risk most, first
        meaning = meanings.get(names[j])
        value = values[0, j]
        if parts[j] <= 0 or meaning is None or not meaning.modifiable or not np.isfinite(value):
            continue
        normal = ranges[str(meaning.concept)].nearest_normal(float(value))
        if normal is not None:
            candidates.append((int(j), normal))
        if len(candidates) == TOP_COUNTERFACTUALS:
            break
    if not candidates:
        return []
    variants = np.repeat(values, len(candidates), axis=0)
    for row, (j, normal) in enumerate(candidates):
        variants[row, j] = normal
    risks = predictor.predict_proba(variants)
    return [
        Counterfactual(feature=names[j], value=float(values[0, j]), normal_value=normal,
                       unit=meanings[names[j]].unit, risk_if_normal=float(risk))
        for (j, normal), risk in zip(candidates, risks, strict=True)
    ]
