"""Delivery runtime: routing per model and site, the predictor runtime, explanations and the prediction log."""

from vitalops.serving.explain import Counterfactual, Explanation, Factor
from vitalops.serving.routing import Assignment, bucket, on_challenger_side, route, site_deployments
from vitalops.serving.runtime import LoadedVersion, Runtime, Score
from vitalops.serving.service import (
    FactSource,
    LakeFacts,
    OnlineFacts,
    Prediction,
    PredictionOutcome,
    PredictionRequest,
    ServingContext,
    get_prediction,
    predict,
    recompute,
    record_outcome,
)

__all__ = [
    "Assignment", "Counterfactual", "Explanation", "Factor", "FactSource", "LakeFacts", "LoadedVersion", "OnlineFacts",
    "Prediction",
    "PredictionOutcome", "PredictionRequest", "Runtime", "Score", "ServingContext", "bucket", "get_prediction",
    "on_challenger_side", "predict", "recompute", "record_outcome", "route", "site_deployments",
]
