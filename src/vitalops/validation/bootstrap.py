"""Percentile bootstrap confidence intervals, vectorised over resamples.

The unit of resampling is the patient. When any patient contributes more than one row (the
deterioration cohort scores each inpatient every 4 hours), a resample draws as many patients as
the sample holds, with replacement, and takes every row of each drawn patient (the cluster
bootstrap, Davison & Hinkley 1997, section 3.8): rows of one patient are correlated, and drawing
rows as if they were independent gives intervals that are too narrow. When every patient has one
row (or no patient key is given) a resample draws rows.

Draws come from a seeded ``numpy.random.Generator``, in blocks of resamples, as counts: how often
each patient was drawn, expanded to that patient's rows. The kernels in
``vitalops.validation.kernels`` score a block from those counts without materialising any
resample. Several views of the same sample (the whole cohort, each subgroup, two models' scores
of the same rows) are scored from the same draws, so a subgroup's interval and its ratio to the
reference group, or the difference between two models, come from the same resampled patients.
Resamples in which a metric is undefined (one outcome class, nobody flagged) are left out of that
metric's percentiles and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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


class Resampling(BaseModel):
    """What a bootstrap resampled, stated in words for the committee that signs the report."""

    model_config = ConfigDict(frozen=True)

    unit: Literal["patients", "rows"]
    patients: int | None
    rows: int
    resamples: int
    description: str


@dataclass(frozen=True)
class Clusters:
    """The resampling units of a sample's rows: ``unit_of_row[i]`` is the patient of row ``i``
    (patients numbered in the sorted order of their keys), or None to resample rows."""

    unit_of_row: np.ndarray | None
    n_units: int
    n_rows: int
    keyed: bool

    def reordered(self, order: np.ndarray) -> Clusters:
        """The same clusters for the rows taken in ``order`` (a sample sorted by score)."""
        units = None if self.unit_of_row is None else self.unit_of_row[order]
        return Clusters(units, self.n_units, self.n_rows, self.keyed)

    def describe(self, n_resamples: int) -> Resampling:
        if self.unit_of_row is not None:
            text = (
                f"{self.n_units:,} patients resampled with replacement, each with all of their rows "
                f"({self.n_rows:,} rows); {n_resamples:,} resamples"
            )
            return Resampling(
                unit="patients", patients=self.n_units, rows=self.n_rows, resamples=n_resamples, description=text
            )
        if self.keyed:
            text = f"rows resampled: one row per patient ({self.n_rows:,} rows); {n_resamples:,} resamples"
        else:
            text = (
                f"rows resampled ({self.n_rows:,} rows): no patient key was given, so each row is treated "
                f"as a separate patient; {n_resamples:,} resamples"
            )
        return Resampling(
            unit="rows",
            patients=self.n_rows if self.keyed else None,
            rows=self.n_rows,
            resamples=n_resamples,
            description=text,
        )


def patient_clusters(patient_keys: Any, n: int) -> Clusters:
    """The clusters of ``n`` rows given each row's patient key (None: every row its own patient).

    Raises InvalidInput when the keys are not one per row or one is missing.
    """
    if patient_keys is None:
        return Clusters(None, n, n, keyed=False)
    keys = np.asarray(patient_keys, dtype=object).ravel()
    if keys.shape[0] != n:
        raise InvalidInput(
            "patient_keys has a different length from y_true", details={"expected": n, "got": int(keys.shape[0])}
        )
    if any(key is None or key != key for key in keys):
        raise InvalidInput("a row has no patient key")
    _, units = np.unique(keys.astype(str), return_inverse=True)
    n_units = int(units.max()) + 1 if n else 0
    if n_units == n:
        return Clusters(None, n, n, keyed=True)
    return Clusters(units.astype(np.intp), n_units, n, keyed=True)


def draw_resamples(
    n: int,
    views: list[View],
    *,
    n_resamples: int,
    seed: int | Sequence[int],
    clusters: Clusters | None = None,
) -> None:
    """Draw ``n_resamples`` resamples of the ``n`` rows and score every view on each.

    Without ``clusters`` (or with one row per patient) a resample is ``n`` rows drawn with
    replacement; with them it is ``clusters.n_units`` patients drawn with replacement, each
    bringing all of its rows. Block ``b`` of ``size`` resamples draws
    ``rng.integers(0, units, size=(size, units))``, row ``r`` being resample ``r``'s units. The
    draws depend only on ``(units, n, n_resamples, seed)``, not on the views.
    """
    unit_of_row = None if clusters is None else clusters.unit_of_row
    if unit_of_row is not None and unit_of_row.shape[0] != n:
        raise InvalidInput("the clusters do not describe the sample's rows")
    units = n if unit_of_row is None else clusters.n_units  # type: ignore[union-attr]
    rng = np.random.default_rng(seed)
    block = max(1, min(n_resamples, _BLOCK_CELLS // max(n, units)))
    done = 0
    while done < n_resamples:
        size = min(block, n_resamples - done)
        drawn = rng.integers(0, units, size=(size, units))
        # Column r of ``counts`` holds how often resample r drew each unit.
        drawn *= size
        drawn += np.arange(size)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=size * units).reshape(units, size).astype(np.float64)
        if unit_of_row is not None:
            counts = counts[unit_of_row]
        by_resample = np.ascontiguousarray(counts.T)
        for view in views:
            for name, values in view.sample.metrics(counts, by_resample).items():
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
    patient_keys: Any = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Interval]:
    """Every metric of ``point_metrics`` (except the counts ``n`` and ``positives``) with its
    percentile bootstrap interval at ``confidence``; the estimate is the full-sample value.

    ``patient_keys`` (one per row) makes the resampling unit the patient whenever a patient has
    more than one row; without it rows are resampled. The same ``seed`` gives the same intervals.
    Raises InvalidInput for bad arrays or arguments.
    """
    check_bootstrap_arguments(n_resamples, confidence)
    outcomes, scores = outcomes_and_scores(y_true, y_score)
    clusters = patient_clusters(patient_keys, outcomes.shape[0])
    sample, order = sorted_sample(outcomes, scores, float(threshold))
    view = View(sample=sample)
    draw_resamples(sample.n, [view], n_resamples=n_resamples, seed=seed, clusters=clusters.reordered(order))
    intervals, _ = intervals_of(sample, view.collected(), confidence)
    return intervals


@dataclass(frozen=True)
class PairedDifference:
    """``metric(candidate) - metric(champion)`` on the same rows, with the percentile interval of
    that difference over the same resampled patients, and what was resampled."""

    metric: str
    candidate: float
    champion: float
    difference: Interval
    excluded_resamples: int
    resampling: Resampling


def paired_difference(
    y_true: Any,
    candidate_score: Any,
    champion_score: Any,
    *,
    metric: str = "auroc",
    patient_keys: Any = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    threshold: float = 0.5,
) -> PairedDifference:
    """The paired bootstrap of ``metric(candidate) - metric(champion)``: both models' scores of the
    same rows are scored on each resample, so the interval reflects how the two differ on the same
    patients, not the spread of each alone. Raises InvalidInput for bad arrays, arguments or metric.
    """
    check_bootstrap_arguments(n_resamples, confidence)
    if metric not in RESAMPLED_METRICS:
        raise InvalidInput(f"unknown metric '{metric}'")
    outcomes, candidate = outcomes_and_scores(y_true, candidate_score)
    _, champion = outcomes_and_scores(y_true, champion_score)
    if champion.shape[0] != candidate.shape[0]:
        raise InvalidInput("candidate and champion scores differ in length")
    clusters = patient_clusters(patient_keys, outcomes.shape[0])
    views = []
    for scores in (candidate, champion):
        order = np.argsort(scores, kind="stable")
        sample = SortedSample(
            outcomes[order], scores[order], threshold=threshold, columns=order, n_columns=outcomes.shape[0]
        )
        views.append(View(sample))
    # The count matrices are in the rows' own order; each view picks its rows by ``columns``.
    draw_resamples(outcomes.shape[0], views, n_resamples=n_resamples, seed=seed, clusters=clusters)
    candidate_point = point_metrics_of(views[0].sample)[metric]
    champion_point = point_metrics_of(views[1].sample)[metric]
    with np.errstate(invalid="ignore"):
        draws = views[0].collected()[metric] - views[1].collected()[metric]
    difference, excluded = percentile_interval(candidate_point - champion_point, draws, confidence)
    return PairedDifference(
        metric=metric,
        candidate=candidate_point,
        champion=champion_point,
        difference=difference,
        excluded_resamples=excluded,
        resampling=clusters.describe(n_resamples),
    )


def one_class_resamples(draws: dict[str, np.ndarray]) -> int:
    """Resamples holding one outcome class only (their AUROC is undefined)."""
    prevalence = draws["prevalence"]
    return int(np.count_nonzero((prevalence == 0) | (prevalence == 1) | ~np.isfinite(prevalence)))
