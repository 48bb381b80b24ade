"""The criteria of a change-control plan, evaluated on the frozen test set's rows.

Each returns ``Criterion`` rows (name, value, bound, passed, and where a bootstrap judged it the
estimate, its interval and what was resampled). Every bootstrap here resamples patients whenever a
patient has several rows (``patient_keys``), as the validation report does. Acceptance uses the
lower end of the seeded 95% percentile interval; non-inferiority the lower end of the interval of
the paired difference AUROC(candidate) - AUROC(champion) on the same resampled patients; behaviour
bounds compare champion and candidate on the same rows, each flagging at its own threshold; ratio
bounds judge a group's point ratio to its reference and record its interval.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel

from vitalops.governance.pccp import BehaviourBounds, RatioBounds
from vitalops.validation.bootstrap import (
    View,
    bootstrap_intervals,
    draw_resamples,
    paired_difference,
    patient_clusters,
    percentile_interval,
)
from vitalops.validation.fairness import age_band
from vitalops.validation.kernels import SortedSample
from vitalops.validation.metrics import point_metrics, point_metrics_of

PSI_FLOOR = 1e-4


class Criterion(BaseModel):
    """One criterion of a PCCP check. ``evaluable`` is False where the data cannot judge it (a
    suppressed small group, a group with one outcome class): it does not fail the check, and it is
    shown as "n/a", never as a pass."""

    name: str
    value: float | str | None
    bound: str
    passed: bool
    note: str = ""
    evaluable: bool = True
    #: Where a bootstrap judged the criterion: the point estimate, its 95% percentile interval, and
    #: what was resampled (e.g. "412 patients resampled with replacement, each with all of their rows").
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    unit: str = ""


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _unit(patient_keys: np.ndarray | None, n: int, n_resamples: int) -> str:
    return patient_clusters(patient_keys, n).describe(n_resamples).description


def acceptance(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    bounds: dict[str, float],
    *,
    n_resamples: int,
    seed: int,
    patient_keys: np.ndarray | None = None,
) -> list[Criterion]:
    """``<metric>_low: bound``: the lower end of the metric's 95% interval reaches the bound."""
    if not bounds:
        return []
    intervals = bootstrap_intervals(
        labels, scores, threshold, patient_keys=patient_keys, n_resamples=n_resamples, seed=seed
    )
    unit = _unit(patient_keys, labels.shape[0], n_resamples)
    rows = []
    for key, bound in sorted(bounds.items()):
        metric = key.removesuffix("_low")
        interval = intervals.get(metric)
        low = None if interval is None else interval.low
        # A known metric that the rows cannot define (one outcome class) is not evaluable, never a
        # pass and not a failure on no evidence; an unknown metric is a failure of the plan.
        undefined = interval is not None and low is None
        rows.append(
            Criterion(
                name=f"acceptance.{key}",
                value=_num(low),
                bound=f">= {bound}",
                passed=low is not None and low >= bound,
                note=(f"unknown metric '{metric}'" if interval is None
                      else "not evaluable: undefined on these rows (one outcome class)" if undefined else ""),
                evaluable=not undefined,
                estimate=None if interval is None else _num(interval.estimate),
                low=_num(low),
                high=None if interval is None else _num(interval.high),
                unit=unit,
            )
        )
    return rows


def non_inferiority(
    labels: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    margin: float,
    *,
    n_resamples: int,
    seed: int,
    patient_keys: np.ndarray | None = None,
) -> Criterion:
    """Passes when the lower end of the 95% percentile interval of the paired difference
    AUROC(candidate) - AUROC(champion), both scored on the same resampled patients, is at least
    ``-margin``. Two point estimates within the margin are not enough: the difference must be shown
    to be no worse than the margin with the data's own uncertainty."""
    paired = paired_difference(
        labels, candidate, champion, metric="auroc", patient_keys=patient_keys, n_resamples=n_resamples, seed=seed
    )
    low = paired.difference.low
    return Criterion(
        name="non_inferiority.auroc_drop",
        value=_num(low),
        bound=f"lower 95% bound of AUROC(candidate) - AUROC(champion) >= {-margin}",
        passed=low is not None and low >= -margin,
        note=(
            f"AUROC candidate {_num(paired.candidate)}, champion {_num(paired.champion)}; paired difference "
            f"{_num(paired.difference.estimate)} ({_num(low)} to {_num(paired.difference.high)})"
            if low is not None
            else "not evaluable: AUROC is undefined on these rows (one outcome class)"
        ),
        evaluable=low is not None,
        estimate=_num(paired.difference.estimate),
        low=_num(low),
        high=_num(paired.difference.high),
        unit=paired.resampling.description,
    )


def quantile_bin_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """The inner edges of ``bins`` quantile bins of ``reference`` (``np.quantile``, linear), ties
    merged; the outer bins are open. A value equal to an edge falls in the bin above it."""
    edges: np.ndarray = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1))[1:-1])
    return edges


def psi_of_counts(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """PSI of two histograms on the same bins: ``sum((q - p) * ln(q / p))`` over the shares, each
    share floored at PSI_FLOOR so that an empty bin stays finite."""
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    p = np.maximum(ref / max(float(ref.sum()), 1.0), PSI_FLOOR)
    q = np.maximum(cur / max(float(cur.sum()), 1.0), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def population_stability(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    """PSI over ``bins`` quantile bins of ``reference`` (outer bins open), shares floored at 1e-4."""
    edges = quantile_bin_edges(reference, bins)
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.shape[0] + 1)
    cur = np.bincount(np.searchsorted(edges, current, side="right"), minlength=edges.shape[0] + 1)
    return psi_of_counts(ref, cur)


def behaviour(
    candidate: np.ndarray,
    candidate_threshold: float,
    champion: np.ndarray,
    champion_threshold: float,
    bounds: BehaviourBounds,
) -> list[Criterion]:
    flag_candidate = candidate >= candidate_threshold
    flag_champion = champion >= champion_threshold
    change = abs(float(flag_candidate.mean()) - float(flag_champion.mean()))
    flips = float(np.mean(flag_candidate != flag_champion))
    psi = population_stability(champion, candidate, bounds.psi_bins)
    return [
        Criterion(
            name="behaviour.flag_rate_change",
            value=_num(change),
            bound=f"<= {bounds.flag_rate_change_max}",
            passed=change <= bounds.flag_rate_change_max,
        ),
        Criterion(
            name="behaviour.decision_flips",
            value=_num(flips),
            bound=f"<= {bounds.decision_flip_max}",
            passed=flips <= bounds.decision_flip_max,
        ),
        Criterion(
            name="behaviour.score_psi",
            value=_num(psi),
            bound=f"<= {bounds.psi_max}",
            passed=psi <= bounds.psi_max,
            note=f"{bounds.psi_bins} quantile bins of the champion's scores, shares floored at {PSI_FLOOR}",
        ),
    ]


def _group_values(attributes: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    if name == "age_band" and "age" in attributes:
        ages = [np.nan if v is None else float(v) for v in attributes["age"]]
        return np.asarray(age_band(np.asarray(ages, dtype=np.float64)), dtype=object)
    values = attributes.get(name)
    return None if values is None else np.asarray([str(v) for v in values], dtype=object)


def ratios(
    prefix: str,
    groups: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    bounds: RatioBounds,
    *,
    reference: str | None,
    patient_keys: np.ndarray | None = None,
    n_resamples: int = 200,
    seed: int = 0,
) -> list[Criterion]:
    """Each group's metric over the reference's (the largest group when ``reference`` is None).

    The bound judges the point ratio; its 95% interval over resampled patients (the group and the
    reference scored on the same resamples) is recorded beside it.
    """
    names, counts = np.unique(groups, return_counts=True)
    if names.shape[0] == 0:
        return []
    reference_name = reference or str(names[int(np.argmax(counts))])
    reference_mask = np.ones(groups.shape[0], dtype=bool) if reference == "all" else groups == reference_name
    reference_value = point_metrics(labels[reference_mask], scores[reference_mask], threshold)[bounds.metric]
    judged = [
        (group, count)
        for group, count in zip(names, counts, strict=True)
        if not (str(group) == reference_name and reference != "all")
    ]
    intervals = _ratio_draws(
        groups,
        labels,
        scores,
        threshold,
        bounds,
        reference_mask,
        [group for group, count in judged if count >= bounds.small_group_min],
        patient_keys=patient_keys,
        n_resamples=n_resamples,
        seed=seed,
    )
    unit = _unit(patient_keys, labels.shape[0], n_resamples)
    rows = []
    for group, count in judged:
        name = f"{prefix}={group}.{bounds.metric}_ratio"
        if count < bounds.small_group_min:
            rows.append(
                Criterion(
                    name=name,
                    value=None,
                    bound="suppressed",
                    passed=True,
                    note=f"fewer than {bounds.small_group_min} rows",
                    evaluable=False,
                )
            )
            continue
        mask = groups == group
        value = point_metrics(labels[mask], scores[mask], threshold)[bounds.metric]
        ratio = value / reference_value if reference_value else float("nan")
        finite = math.isfinite(ratio)
        low, high = intervals.get(str(group), (None, None))
        # A group with one outcome class cannot be judged on this metric: reported as not evaluable,
        # like a suppressed group, rather than failed on no evidence.
        rows.append(
            Criterion(
                name=name,
                value=_num(ratio),
                bound=f"{bounds.ratio_min}-{bounds.ratio_max}",
                passed=not finite or bounds.ratio_min <= ratio <= bounds.ratio_max,
                note="" if finite else "not evaluable: one outcome class in this group",
                evaluable=finite,
                estimate=_num(ratio),
                low=_num(low),
                high=_num(high),
                unit=unit,
            )
        )
    return rows


def _ratio_draws(
    groups: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    bounds: RatioBounds,
    reference_mask: np.ndarray,
    judged: list[object],
    *,
    patient_keys: np.ndarray | None,
    n_resamples: int,
    seed: int,
) -> dict[str, tuple[float | None, float | None]]:
    """Per judged group, the 95% percentile interval of its ratio to the reference over the same
    resampled patients (None where undefined)."""
    if not judged:
        return {}

    def view_of(mask: np.ndarray) -> View:
        rows = np.flatnonzero(mask)
        order = rows[np.argsort(scores[rows], kind="stable")]
        outcomes = np.asarray(labels[order], dtype=np.int8)
        return View(
            SortedSample(outcomes, scores[order], threshold=threshold, columns=order, n_columns=labels.shape[0])
        )

    reference_view = view_of(reference_mask)
    group_views = {str(group): view_of(groups == group) for group in judged}
    clusters = patient_clusters(patient_keys, labels.shape[0])
    draw_resamples(
        labels.shape[0],
        [reference_view, *group_views.values()],
        n_resamples=n_resamples,
        seed=seed,
        clusters=clusters,
    )
    reference_draws = reference_view.collected()[bounds.metric]
    intervals: dict[str, tuple[float | None, float | None]] = {}
    for group, view in group_views.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_draws = view.collected()[bounds.metric] / reference_draws
            estimate = np.float64(point_metrics_of(view.sample)[bounds.metric]) / np.float64(
                point_metrics_of(reference_view.sample)[bounds.metric]
            )
        interval, _ = percentile_interval(float(estimate), ratio_draws, 0.95)
        intervals[group] = (interval.low, interval.high)
    return intervals


def subgroup_ratios(
    attributes: dict[str, np.ndarray],
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    bounds: RatioBounds,
    *,
    patient_keys: np.ndarray | None = None,
    n_resamples: int = 200,
    seed: int = 0,
) -> list[Criterion]:
    rows: list[Criterion] = []
    for attribute in bounds.attributes:
        groups = _group_values(attributes, attribute)
        if groups is not None:
            rows.extend(
                ratios(
                    f"subgroup.{attribute}",
                    groups,
                    labels,
                    scores,
                    threshold,
                    bounds,
                    reference=None,
                    patient_keys=patient_keys,
                    n_resamples=n_resamples,
                    seed=seed,
                )
            )
    return rows
