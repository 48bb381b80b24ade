"""Checks on the arrays every validation function receives: binary outcomes and risk scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from vitalops.errors import InvalidInput


def outcomes_and_scores(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(outcomes as int8 0/1, scores as float64)`` after checking them.

    Raises InvalidInput when the arrays are empty, differ in length, the outcomes are not 0/1
    (booleans are accepted) or a score is not a finite probability in [0, 1]. Messages name
    the argument, never a value.
    """
    outcomes = np.asarray(y_true).ravel()
    scores = np.asarray(y_score, dtype=np.float64).ravel()
    if outcomes.shape[0] == 0:
        raise InvalidInput("y_true is empty: there is nothing to validate")
    if outcomes.shape[0] != scores.shape[0]:
        raise InvalidInput(
            "y_true and y_score differ in length",
            details={"y_true": int(outcomes.shape[0]), "y_score": int(scores.shape[0])},
        )
    if outcomes.dtype == bool:
        outcomes = outcomes.astype(np.int8)
    else:
        numeric = np.asarray(outcomes, dtype=np.float64)
        if not np.all((numeric == 0) | (numeric == 1)):
            raise InvalidInput("y_true must hold only the outcome codes 0 and 1")
        outcomes = numeric.astype(np.int8)
    if not np.all(np.isfinite(scores)):
        raise InvalidInput("y_score holds a missing or infinite score")
    if scores.min() < 0.0 or scores.max() > 1.0:
        raise InvalidInput("y_score must hold probabilities between 0 and 1")
    return outcomes, scores


def group_labels(values: Any, n: int, *, attribute: str) -> np.ndarray:
    """Group labels as strings, missing values (None, NaN, empty) labelled ``"unknown"``.

    Raises InvalidInput when the array's length is not ``n``.
    """
    array = np.asarray(values, dtype=object).ravel()
    if array.shape[0] != n:
        raise InvalidInput(
            f"group attribute {attribute!r} has a different length from y_true",
            details={"attribute": attribute, "expected": n, "got": int(array.shape[0])},
        )
    missing = pd.isna(array) | (array == "")
    labels = array.astype(str).astype(object)
    labels[missing] = "unknown"
    return labels.astype(str)
