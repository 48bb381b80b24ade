"""A small synthetic scored cohort shared by the validation tests."""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def scored_cohort(n: int, seed: int = 7, *, rounded: bool = False) -> dict[str, np.ndarray]:
    """Outcomes, risk scores (optionally rounded to create ties) and demographic strata."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    outcomes = rng.binomial(1, expit(1.4 * signal - 1.6))
    scores = expit(signal - 1.4)
    if rounded:
        scores = np.round(scores, 2)
    return {
        "y": outcomes,
        "score": scores,
        "sex": rng.choice(["female", "male"], n),
        "age": rng.uniform(18, 95, n),
        "race": rng.choice(["white", "black", "asian", "other"], n, p=[0.6, 0.25, 0.13, 0.02]),
        "ethnicity": rng.choice(["hispanic", "not hispanic"], n, p=[0.2, 0.8]),
        "site": rng.choice(["north", "south", "east"], n),
    }
