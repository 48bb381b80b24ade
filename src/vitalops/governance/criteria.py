"""The criteria of a change-control plan, evaluated on the frozen test set's rows.

Each returns ``Criterion`` rows (name, value, bound, passed). Acceptance uses the lower end of
the seeded 95% percentile bootstrap interval from ``vitalops.validation``; behaviour bounds
compare champion and candidate on the same rows, each flagging at its own threshold.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel

from vitalops.governance.pccp import BehaviourBounds, RatioBounds
from vitalops.validation.bootstrap import bootstrap_intervals
from vitalops.validation.fairness import age_band
from vitalops.validation.metrics import point_metrics

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


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def acceptance(
    labels: np.ndarray, scores: np.ndarray, threshold: float, bounds: dict[str, float], *, n_resamples: int, seed: int
) -> list[Criterion]:
    if not bounds:
        return []
    intervals = bootstrap_intervals(labels, scores, threshold, n_resamples=n_resamples, seed=seed)
    rows = []
    for key, bound in sorted(bounds.items()):
        metric = key.removesuffix("_low")
        interval = intervals.get(metric)
        low = None if interval is None else interval.low
        rows.append(
            Criterion(
                name=f"acceptance.{key}",
                value=_num(low),
                bound=f">= {bound}",
                passed=low is not None and low >= bound,
                note="" if interval is not None else f"unknown metric '{metric}'",
            )
        )
    return rows


def non_inferiority(labels: np.ndarray, candidate: np.ndarray, champion: np.ndarray, margin: float) -> Criterion:
    drop = point_metrics(labels, champion, 0.5)["auroc"] - point_metrics(labels, candidate, 0.5)["auroc"]
    return Criterion(
        name="non_inferiority.auroc_drop",
        value=_num(drop),
        bound=f"<= {margin}",
        passed=math.isfinite(drop) and drop <= margin,
    )


def population_stability(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    """PSI over ``bins`` quantile bins of ``reference`` (outer bins open), shares floored at 1e-4."""
    edges = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1))[1:-1])
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.shape[0] + 1)
    cur = np.bincount(np.searchsorted(edges, current, side="right"), minlength=edges.shape[0] + 1)
    p = np.maximum(ref / max(reference.shape[0], 1), PSI_FLOOR)
    q = np.maximum(cur / max(current.shape[0], 1), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


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
) -> list[Criterion]:
    """Each group's metric over the reference's (the largest group when ``reference`` is None)."""
    names, counts = np.unique(groups, return_counts=True)
    if names.shape[0] == 0:
        return []
    reference_name = reference or str(names[int(np.argmax(counts))])
    reference_mask = np.ones(groups.shape[0], dtype=bool) if reference == "all" else groups == reference_name
    reference_value = point_metrics(labels[reference_mask], scores[reference_mask], threshold)[bounds.metric]
    rows = []
    for group, count in zip(names, counts, strict=True):
        name = f"{prefix}={group}.{bounds.metric}_ratio"
        if str(group) == reference_name and reference != "all":
            continue
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
            )
        )
    return rows


def subgroup_ratios(
    attributes: dict[str, np.ndarray], labels: np.ndarray, scores: np.ndarray, threshold: float, bounds: RatioBounds
) -> list[Criterion]:
    rows: list[Criterion] = []
    for attribute in bounds.attributes:
        groups = _group_values(attributes, attribute)
        if groups is not None:
            rows.extend(ratios(f"subgroup.{attribute}", groups, labels, scores, threshold, bounds, reference=None))
    return rows
