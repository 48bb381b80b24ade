"""Percentile bootstrap confidence intervals, vectorised over resamples.

Resamples are drawn with a seeded ``numpy.random.Generator`` as multinomial counts over the
score-sorted rows (n draws with replacement), in blocks, and scored by the kernels in
``vitalops.validation.kernels`` without materialising any resample. Several views of the same
sample (the whole cohort and each subgroup) are scored from the same draws, so a subgroup's
interval and its ratio to the reference group come from the same resampled cohorts. Resamples
in which a metric is undefined (one outcome class, nobody flagged) are left out of that
metric's percentiles and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from vitalops.errors import InvalidInput
from vitalops.validation.inputs import outcomes_and_scores
from vitalops.validation.kernels import RESAMPLED_METRICS, SortedSample
from vitalops.validation.metrics import point_metrics_of, sorted_sample

# Cells (resamples x rows) scored per block: bounds memory near 100 MB and keeps arrays in cache.
_BLOCK_CELLS = 1_000_000


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, NaN or infinite (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class Interval(BaseModel):
    """A point estimate with its bootstrap percentile interval; None where undefined."""

    model_config = ConfigDict(frozen=True)

    estimate: float | None
    low: float | None
    high: float | None

    @field_validator("estimate", "low", "high", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> float | None:
        return finite_or_none(value)


@dataclass
class View:
    """A sample (the cohort or one subgroup of it) scored on every resample of the cohort."""

    sample: SortedSample
    draws: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def collected(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(blocks, axis=0) for name, blocks in self.draws.items()}


def draw_resamples(n: int, views: list[View], *, n_resamples: int, seed: int | Sequence[int]) -> None:
    """Draw ``n_resamples`` multinomial resamples of ``n`` rows and score every view on each.

    The draws depend only on ``(n, n_resamples, seed)``, not on the views.
    """
    rng = np.random.default_rng(seed)
    block = max(1, min(n_resamples, _BLOCK_CELLS // n))
    done = 0
    while done < n_resamples:
        size = min(block, n_resamples - done)
        drawn = rng.integers(0, n, size=(size, n))
        # Column r of ``counts`` holds how often resample r drew each row.
        drawn *= size
        drawn += np.arange(size)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=size * n).reshape(n, size).astype(np.float64)
        for view in views:
            for name, values in view.sample.metrics(counts).items():
                view.draws.setdefault(name, []).append(values)
        done += size


def percentile_interval(estimate: float, draws: np.ndarray, confidence: float) -> tuple[Interval, int]:
    """The percentile interval of the finite ``draws`` and how many draws were not finite."""
    finite = draws[np.isfinite(draws)]
    excluded = int(draws.shape[0] - finite.shape[0])
    if finite.shape[0] == 0 or not math.isfinite(estimate):
        return Interval(estimate=estimate, low=None, high=None), excluded
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(estimate=estimate, low=float(low), high=float(high)), excluded


def check_bootstrap_arguments(n_resamples: int, confidence: float) -> None:
    """Raises InvalidInput unless ``n_resamples >= 1`` and ``0 < confidence < 1``."""
    if n_resamples < 1:
        raise InvalidInput("n_resamples must be at least 1")
    if not 0.0 < confidence < 1.0:
        raise InvalidInput("confidence must be between 0 and 1")


def intervals_of(
    sample: SortedSample, draws: dict[str, np.ndarray], confidence: float
) -> tuple[dict[str, Interval], dict[str, int]]:
    """Intervals for every resampled metric, and per metric the count of excluded resamples."""
    estimates = point_metrics_of(sample)
    intervals: dict[str, Interval] = {}
    excluded: dict[str, int] = {}
    for name in RESAMPLED_METRICS:
        intervals[name], excluded[name] = percentile_interval(estimates[name], draws[name], confidence)
    return intervals, excluded


def bootstrap_intervals(
    y_true: Any,
    y_score: Any,
    threshold: float,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Interval]:
    """Every metric of ``point_metrics`` (except the counts ``n`` and ``positives``) with its
    percentile bootstrap interval at ``confidence``; the estimate is the full-sample value.

    The same ``seed`` gives the same intervals. Raises InvalidInput for bad arrays or arguments.
    """
    check_bootstrap_arguments(n_resamples, confidence)
    outcomes, scores = outcomes_and_scores(y_true, y_score)
    sample, _ = sorted_sample(outcomes, scores, float(threshold))
    view = View(sample=sample)
    draw_resamples(sample.n, [view], n_resamples=n_resamples, seed=seed)
    intervals, _ = intervals_of(sample, view.collected(), confidence)
    return intervals


def one_class_resamples(draws: dict[str, np.ndarray]) -> int:
    """Resamples holding one outcome class only (their AUROC is undefined)."""
    prevalence = draws["prevalence"]
    return int(np.count_nonzero((prevalence == 0) | (prevalence == 1) | ~np.isfinite(prevalence)))
