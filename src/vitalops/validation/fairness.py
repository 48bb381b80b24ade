"""Subgroup performance: each group's metrics with intervals and its ratio to a reference group.

Attributes are the clinic's usual strata (sex, age band, race, ethnicity, site). A group with
fewer than ``small_group_min`` rows is suppressed: no metric, no ratio, and its size shown only
as ``"<N"``, so small cells cannot identify patients. The reference group of an attribute is
the one named in ``reference``, else the largest shown group. Ratios (group / reference) are
given for sensitivity, specificity, PPV, flag rate and AUROC, each with a bootstrap interval
computed on the same resampled cohorts as both groups' metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from vitalops.errors import InvalidInput
from vitalops.validation.bootstrap import (
    Interval,
    View,
    check_bootstrap_arguments,
    draw_resamples,
    intervals_of,
    one_class_resamples,
    percentile_interval,
)
from vitalops.validation.inputs import group_labels, outcomes_and_scores
from vitalops.validation.kernels import SortedSample
from vitalops.validation.metrics import point_metrics_of, sorted_sample

RATIO_METRICS = ("sensitivity", "specificity", "ppv", "flag_rate", "auroc")
# Age bands in whole years at the prediction time: [18, 40), [40, 65), [65, 80), [80, inf).
# Younger patients and missing ages are "unknown" (the models are validated on adults).
AGE_BANDS = ("18-39", "40-64", "65-79", "80+")
_AGE_EDGES = (18.0, 40.0, 65.0, 80.0)


def age_band(age_years: Any) -> np.ndarray:
    """The age band of each age in years: ``18-39``, ``40-64``, ``65-79``, ``80+``; ages under
    18 or missing are ``unknown``."""
    ages = np.asarray(age_years, dtype=np.float64).ravel()
    bands = np.full(ages.shape[0], "unknown", dtype=object)
    known = np.isfinite(ages) & (ages >= _AGE_EDGES[0])
    index = np.searchsorted(np.asarray(_AGE_EDGES[1:]), ages[known], side="right")
    bands[known] = np.asarray(AGE_BANDS, dtype=object)[index]
    return bands.astype(str)


class SubgroupResult(BaseModel):
    """One group of one attribute. ``n``/``positives``/``metrics``/``ratios`` are None when
    the group is suppressed; ``count_display`` is then ``"<N"``."""

    model_config = ConfigDict(frozen=True)

    attribute: str
    group: str
    suppressed: bool
    count_display: str
    n: int | None
    positives: int | None
    is_reference: bool
    reference_group: str | None
    metrics: dict[str, Interval] | None
    ratios: dict[str, Interval] | None
    excluded_resamples: int | None


def subgroup_views(
    sample: SortedSample,
    order: np.ndarray,
    groups: dict[str, np.ndarray],
    *,
    threshold: float,
    small_group_min: int,
) -> list[tuple[str, str, int, View | None]]:
    """For each attribute and group: its size and a view on ``sample`` (None when suppressed)."""
    if small_group_min < 1:
        raise InvalidInput("small_group_min must be at least 1")
    planned: list[tuple[str, str, int, View | None]] = []
    for attribute in groups:
        labels = group_labels(groups[attribute], sample.n, attribute=attribute)[order]
        for group in sorted(set(labels.tolist())):
            positions = np.flatnonzero(labels == group)
            if positions.shape[0] < small_group_min:
                planned.append((attribute, group, int(positions.shape[0]), None))
                continue
            group_sample = SortedSample(
                sample.outcomes[positions],
                sample.scores[positions],
                threshold=threshold,
                columns=positions,
                n_columns=sample.n,
            )
            planned.append((attribute, group, int(positions.shape[0]), View(group_sample)))
    return planned


def subgroup_results(
    planned: list[tuple[str, str, int, View | None]],
    *,
    reference: dict[str, str] | None,
    small_group_min: int,
    confidence: float,
    warnings: list[str],
) -> list[SubgroupResult]:
    """Turn scored views into results; appends PHI-free notes to ``warnings``."""
    reference = reference or {}
    results: list[SubgroupResult] = []
    for attribute in dict.fromkeys(item[0] for item in planned):
        members = [item for item in planned if item[0] == attribute]
        shown = [item for item in members if item[3] is not None]
        chosen = reference.get(attribute)
        if chosen is None and shown:
            chosen = max(shown, key=lambda item: (item[2], item[1]))[1]
        reference_view = next((item[3] for item in shown if item[1] == chosen), None)
        if reference_view is None:
            warnings.append(f"{attribute}: reference group is absent or suppressed; ratios not computed")
        reference_draws = reference_view.collected() if reference_view is not None else None
        reference_point = point_metrics_of(reference_view.sample) if reference_view is not None else None
        for _, group, size, view in members:
            if view is None:
                warnings.append(f"{attribute}={group}: fewer than {small_group_min} rows; suppressed")
                results.append(
                    SubgroupResult(
                        attribute=attribute,
                        group=group,
                        suppressed=True,
                        count_display=f"<{small_group_min}",
                        n=None,
                        positives=None,
                        is_reference=False,
                        reference_group=chosen,
                        metrics=None,
                        ratios=None,
                        excluded_resamples=None,
                    )
                )
                continue
            draws = view.collected()
            metrics, _ = intervals_of(view.sample, draws, confidence)
            excluded = one_class_resamples(draws)
            if excluded:
                warnings.append(
                    f"{attribute}={group}: {excluded} resamples had one outcome class; left out of AUROC/AUPRC"
                )
            ratios = None
            if reference_draws is not None and reference_point is not None:
                point = point_metrics_of(view.sample)
                ratios = {}
                for metric in RATIO_METRICS:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        ratio_draws = draws[metric] / reference_draws[metric]
                        estimate = np.float64(point[metric]) / np.float64(reference_point[metric])
                    ratios[metric], _ = percentile_interval(float(estimate), ratio_draws, confidence)
            results.append(
                SubgroupResult(
                    attribute=attribute,
                    group=group,
                    suppressed=False,
                    count_display=str(size),
                    n=size,
                    positives=int(view.sample.positions.shape[0]),
                    is_reference=group == chosen,
                    reference_group=chosen,
                    metrics=metrics,
                    ratios=ratios,
                    excluded_resamples=excluded,
                )
            )
    return results


def subgroup_metrics(
    y_true: Any,
    y_score: Any,
    threshold: float,
    groups: dict[str, np.ndarray],
    *,
    reference: dict[str, str] | None = None,
    small_group_min: int = 20,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[SubgroupResult]:
    """Per attribute and group: size, metrics with percentile intervals and ratios to the
    reference group; small groups suppressed. Groups are listed per attribute in label order.

    Raises InvalidInput for bad arrays, a group array of the wrong length or bad arguments.
    """
    check_bootstrap_arguments(n_resamples, confidence)
    outcomes, scores = outcomes_and_scores(y_true, y_score)
    sample, order = sorted_sample(outcomes, scores, float(threshold))
    planned = subgroup_views(sample, order, groups, threshold=float(threshold), small_group_min=small_group_min)
    views = [item[3] for item in planned if item[3] is not None]
    draw_resamples(sample.n, views, n_resamples=n_resamples, seed=seed)
    return subgroup_results(
        planned, reference=reference, small_group_min=small_group_min, confidence=confidence, warnings=[]
    )
