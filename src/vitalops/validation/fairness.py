"""Subgroup performance: each group's metrics with intervals and its ratio to a reference group.

Attributes are the clinic's usual strata (sex, age band, race, ethnicity, site). Small cells
are suppressed by the rule of ``vitalops.validation.suppression`` (complementary suppression, so
no hidden count follows from the totals): a group with a hidden count shows no metric and no
ratio, its size as ``"<N"`` (or ``"suppressed"`` when hidden to protect another cell). The
reference group of an attribute is the one named in ``reference``, else the largest shown group.
Ratios (group / reference) are given for sensitivity, specificity, PPV, flag rate and AUROC,
each with a bootstrap interval computed on the same resampled patients as both groups' metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    patient_clusters,
    percentile_interval,
)
from vitalops.validation.inputs import group_labels, outcomes_and_scores
from vitalops.validation.kernels import SortedSample
from vitalops.validation.metrics import point_metrics_of, sorted_sample
from vitalops.validation.suppression import CellSuppression, count_text, suppress_cells

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
    """One group of one attribute. ``suppressed``: a count is hidden, so ``metrics`` and ``ratios``
    are None; ``n`` is None when the size is hidden, ``positives`` when the positives are, and the
    ``*_display`` texts say ``"<N"`` or ``"suppressed"`` there."""

    model_config = ConfigDict(frozen=True)

    attribute: str
    group: str
    suppressed: bool
    count_display: str
    n: int | None
    positives: int | None
    positives_display: str = ""
    is_reference: bool
    reference_group: str | None
    metrics: dict[str, Interval] | None
    ratios: dict[str, Interval] | None
    excluded_resamples: int | None


@dataclass
class PlannedGroup:
    """One group of one attribute before resampling: its counts, what is hidden, and its view
    (None when a count is hidden: a suppressed group is never scored)."""

    attribute: str
    group: str
    size: int
    positives: int
    hidden: CellSuppression
    view: View | None


def subgroup_views(
    sample: SortedSample,
    order: np.ndarray,
    groups: dict[str, np.ndarray],
    *,
    threshold: float,
    small_group_min: int,
) -> list[PlannedGroup]:
    """For each attribute and group: its counts, its suppression and a view on ``sample``."""
    if small_group_min < 1:
        raise InvalidInput("small_group_min must be at least 1")
    planned: list[PlannedGroup] = []
    for attribute in groups:
        labels = group_labels(groups[attribute], sample.n, attribute=attribute)[order]
        members = {group: np.flatnonzero(labels == group) for group in sorted(set(labels.tolist()))}
        sizes = {group: int(rows.shape[0]) for group, rows in members.items()}
        positives = {group: int(sample.outcomes[rows].sum()) for group, rows in members.items()}
        hidden = suppress_cells(sizes, positives, small_group_min)
        for group, positions in members.items():
            view = None
            if not hidden[group].any:
                group_sample = SortedSample(
                    sample.outcomes[positions],
                    sample.scores[positions],
                    threshold=threshold,
                    columns=positions,
                    n_columns=sample.n,
                )
                view = View(group_sample)
            planned.append(PlannedGroup(attribute, group, sizes[group], positives[group], hidden[group], view))
    return planned


def _suppressed_result(item: PlannedGroup, chosen: str | None, small_group_min: int) -> SubgroupResult:
    hidden = item.hidden
    return SubgroupResult(
        attribute=item.attribute,
        group=item.group,
        suppressed=True,
        count_display=count_text(
            item.size, hidden.size, minimum=small_group_min, below_minimum=item.size < small_group_min
        ),
        n=None if hidden.size else item.size,
        positives=None,
        positives_display=count_text(
            item.positives, True, minimum=small_group_min, below_minimum=item.positives < small_group_min
        ),
        is_reference=False,
        reference_group=chosen,
        metrics=None,
        ratios=None,
        excluded_resamples=None,
    )


def _suppression_warning(item: PlannedGroup, small_group_min: int) -> str:
    where = f"{item.attribute}={item.group}"
    if item.hidden.size and not item.hidden.complementary:
        return f"{where}: fewer than {small_group_min} rows; suppressed"
    if item.hidden.size:
        return f"{where}: size suppressed so that a smaller group's size cannot be derived from the total"
    return f"{where}: positives suppressed (small numbers, or to protect another group's); metrics not shown"


def subgroup_results(
    planned: list[PlannedGroup],
    *,
    reference: dict[str, str] | None,
    small_group_min: int,
    confidence: float,
    warnings: list[str],
) -> list[SubgroupResult]:
    """Turn scored views into results; appends PHI-free notes to ``warnings``."""
    reference = reference or {}
    results: list[SubgroupResult] = []
    for attribute in dict.fromkeys(item.attribute for item in planned):
        members = [item for item in planned if item.attribute == attribute]
        shown = [item for item in members if item.view is not None]
        chosen = reference.get(attribute)
        if chosen is None and shown:
            chosen = max(shown, key=lambda item: (item.size, item.group)).group
        reference_view = next((item.view for item in shown if item.group == chosen), None)
        if reference_view is None:
            warnings.append(f"{attribute}: reference group is absent or suppressed; ratios not computed")
        reference_draws = reference_view.collected() if reference_view is not None else None
        reference_point = point_metrics_of(reference_view.sample) if reference_view is not None else None
        for item in members:
            group, size, view = item.group, item.size, item.view
            if view is None:
                warnings.append(_suppression_warning(item, small_group_min))
                results.append(_suppressed_result(item, chosen, small_group_min))
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
                    positives_display=str(int(view.sample.positions.shape[0])),
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
    patient_keys: Any = None,
) -> list[SubgroupResult]:
    """Per attribute and group: size, metrics with percentile intervals and ratios to the
    reference group; small cells suppressed (see ``suppression``). Groups are listed per attribute
    in label order. ``patient_keys`` makes the resampling unit the patient (see ``bootstrap``).

    Raises InvalidInput for bad arrays, a group array of the wrong length or bad arguments.
    """
    check_bootstrap_arguments(n_resamples, confidence)
    outcomes, scores = outcomes_and_scores(y_true, y_score)
    clusters = patient_clusters(patient_keys, outcomes.shape[0])
    sample, order = sorted_sample(outcomes, scores, float(threshold))
    planned = subgroup_views(sample, order, groups, threshold=float(threshold), small_group_min=small_group_min)
    views = [item.view for item in planned if item.view is not None]
    draw_resamples(sample.n, views, n_resamples=n_resamples, seed=seed, clusters=clusters.reordered(order))
    return subgroup_results(
        planned, reference=reference, small_group_min=small_group_min, confidence=confidence, warnings=[]
    )
