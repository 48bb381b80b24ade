"""The validation report: everything a governance committee reviews about a model's performance.

Stored as JSON (``ValidationReport.model_dump(mode="json")``), rendered as self-contained HTML
with ``render_report_html``. Every number is JSON-safe: an undefined metric is None, never NaN.
``content_hash()`` is the sha256 of the canonical JSON of everything stored, ``created_at``
included: an approval records it, so any change to a stored report voids the approval.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from vitalops.core.clock import isoformat_utc, utcnow
from vitalops.core.ids import content_hash
from vitalops.errors import InvalidInput
from vitalops.validation.bootstrap import (
    Interval,
    Resampling,
    View,
    check_bootstrap_arguments,
    draw_resamples,
    intervals_of,
    one_class_resamples,
    patient_clusters,
    percentile_interval,
)
from vitalops.validation.fairness import SubgroupResult, subgroup_results, subgroup_views
from vitalops.validation.inputs import outcomes_and_scores
from vitalops.validation.metrics import calibration_curve, net_benefit, sorted_sample
from vitalops.validation.report_html import render_report_html
from vitalops.validation.suppression import count_text, suppress_cells, suppression_rule
from vitalops.validation.thresholds import ThresholdRule, choose_threshold

__all__ = [
    "CalibrationBin",
    "DecisionCurvePoint",
    "ExternalSiteResult",
    "OverallResult",
    "ValidationReport",
    "build_report",
    "meets_minimums",
    "render_report_html",
]

SCHEMA_VERSION = "2"
# Threshold probabilities of the decision curve: 1% to 50%, the range where early-warning
# models are acted on (Vickers & Elkin 2006 advise the clinically reasonable range only).
DEFAULT_DECISION_THRESHOLDS = tuple(round(0.01 * step, 2) for step in range(1, 51))


class OverallResult(BaseModel):
    """The whole cohort: ``n`` rows, of ``patients`` patients (None when no patient key was given)."""

    model_config = ConfigDict(frozen=True)

    n: int
    positives: int
    patients: int | None = None
    metrics: dict[str, Interval]
    one_class_resamples: int


class CalibrationBin(BaseModel):
    model_config = ConfigDict(frozen=True)

    bin: int
    mean_predicted: float
    observed_rate: float
    count: int


class DecisionCurvePoint(BaseModel):
    """Net benefit at one threshold probability, the model's with its bootstrap interval."""

    model_config = ConfigDict(frozen=True)

    threshold: float
    model: Interval
    treat_all: float
    treat_none: float


class ExternalSiteResult(BaseModel):
    """A held-out site scored at the development threshold; its cells suppressed by the same rule
    as a subgroup's (a site stands alone, so no complement is needed)."""

    model_config = ConfigDict(frozen=True)

    site: str
    suppressed: bool
    count_display: str
    n: int | None
    positives: int | None
    metrics: dict[str, Interval] | None
    one_class_resamples: int | None
    positives_display: str = ""
    resampling: Resampling | None = None


class ValidationReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: str = SCHEMA_VERSION
    created_at: str
    threshold: float
    threshold_rule: dict[str, Any] | None
    #: "rule": picked by ``threshold_rule`` on these rows; "training": picked by the rule on the
    #: training rows and applied here unchanged; "given": set by the caller.
    threshold_source: Literal["rule", "given", "training"]
    confidence: float
    n_bootstrap: int
    seed: int
    small_group_min: int
    #: What the bootstrap resampled, in words (None in reports stored before it was recorded).
    resampling: Resampling | None = None
    #: The small-cell suppression rule applied to every count table, in words.
    suppression_rule: str = ""
    overall: OverallResult
    calibration: list[CalibrationBin]
    decision_curve: list[DecisionCurvePoint]
    subgroups: list[SubgroupResult]
    external: list[ExternalSiteResult]
    warnings: list[str]

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the whole stored report (``created_at`` included)."""
        return content_hash(self.model_dump(mode="json"))


def build_report(
    y_true: Any,
    y_score: Any,
    *,
    threshold_rule: ThresholdRule,
    groups: dict[str, np.ndarray],
    sites: np.ndarray | None = None,
    external: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    small_group_min: int = 20,
    patient_days: float | None = None,
    threshold: float | None = None,
    reference: dict[str, str] | None = None,
    confidence: float = 0.95,
    decision_thresholds: tuple[float, ...] = DEFAULT_DECISION_THRESHOLDS,
    threshold_from_training: bool = False,
    patient_keys: Any = None,
    external_patient_keys: dict[str, Any] | None = None,
) -> ValidationReport:
    """Validate scores against outcomes: overall metrics with intervals, calibration, decision
    curve, subgroups (``groups`` plus ``sites`` as attribute ``site``) and each held-out site in
    ``external`` (``site -> (y_true, y_score)``), all at one operating threshold.

    The threshold is ``threshold`` when given, else the one ``threshold_rule`` picks on these
    rows; ``threshold_from_training`` records that a given threshold was picked by the rule on the
    training rows. The cohort and its subgroups share the same resamples. ``patient_keys`` (one per
    row; ``external_patient_keys`` per held-out site) make the resampling unit the patient whenever
    a patient has several rows (see ``bootstrap``). Raises InvalidInput for bad arrays, arguments,
    or a ``site`` attribute given twice.
    """
    check_bootstrap_arguments(n_resamples, confidence)
    outcomes, scores = outcomes_and_scores(y_true, y_score)
    clusters = patient_clusters(patient_keys, outcomes.shape[0])
    warnings: list[str] = []
    if threshold is None:
        threshold = choose_threshold(outcomes, scores, threshold_rule, patient_days=patient_days)
        source: Literal["rule", "given", "training"] = "rule"
    else:
        source = "training" if threshold_from_training else "given"
    threshold = float(threshold)
    all_groups = dict(groups)
    if sites is not None:
        if "site" in all_groups:
            raise InvalidInput("site is given both in groups and as sites")
        all_groups["site"] = sites
    curve_thresholds = np.asarray(decision_thresholds, dtype=np.float64)
    sample, order = sorted_sample(outcomes, scores, threshold, net_benefit_thresholds=curve_thresholds)
    planned = subgroup_views(sample, order, all_groups, threshold=threshold, small_group_min=small_group_min)
    cohort = View(sample)
    draw_resamples(
        sample.n,
        [cohort] + [item.view for item in planned if item.view is not None],
        n_resamples=n_resamples,
        seed=seed,
        clusters=clusters.reordered(order),
    )
    draws = cohort.collected()
    metrics, _ = intervals_of(sample, draws, confidence)
    one_class = one_class_resamples(draws)
    if one_class:
        warnings.append(f"overall: {one_class} resamples had one outcome class; left out of AUROC/AUPRC")
    if metrics["flag_rate"].estimate == 0.0:
        warnings.append("the operating threshold flags no patient in the validation data")
    overall = OverallResult(
        n=sample.n,
        positives=int(sample.positions.shape[0]),
        patients=clusters.n_units if clusters.keyed else None,
        metrics=metrics,
        one_class_resamples=one_class,
    )
    decision_curve = [
        DecisionCurvePoint(
            threshold=point["threshold"],
            model=percentile_interval(point["model"], draws["net_benefit"][:, index], confidence)[0],
            treat_all=point["treat_all"],
            treat_none=point["treat_none"],
        )
        for index, point in enumerate(net_benefit(outcomes, scores, curve_thresholds))
    ]
    subgroups = subgroup_results(
        planned, reference=reference, small_group_min=small_group_min, confidence=confidence, warnings=warnings
    )
    external_keys = external_patient_keys or {}
    external_results = [
        _external_site(
            site,
            pair,
            external_keys.get(site),
            threshold,
            small_group_min,
            n_resamples,
            [seed, index + 1],
            confidence,
            warnings,
        )
        for index, (site, pair) in enumerate(sorted((external or {}).items()))
    ]
    return ValidationReport(
        created_at=isoformat_utc(utcnow()),
        threshold=threshold,
        threshold_rule=threshold_rule.to_dict(),
        threshold_source=source,
        confidence=confidence,
        n_bootstrap=n_resamples,
        seed=seed,
        small_group_min=small_group_min,
        resampling=clusters.describe(n_resamples),
        suppression_rule=suppression_rule(small_group_min),
        overall=overall,
        calibration=[CalibrationBin(**row) for row in calibration_curve(outcomes, scores)],
        decision_curve=decision_curve,
        subgroups=subgroups,
        external=external_results,
        warnings=warnings,
    )


def _external_site(
    site: str,
    pair: tuple[np.ndarray, np.ndarray],
    patient_keys: Any,
    threshold: float,
    small_group_min: int,
    n_resamples: int,
    seed: list[int],
    confidence: float,
    warnings: list[str],
) -> ExternalSiteResult:
    outcomes, scores = outcomes_and_scores(*pair)
    clusters = patient_clusters(patient_keys, outcomes.shape[0])
    size, positives = int(outcomes.shape[0]), int(outcomes.sum())
    hidden = suppress_cells({site: size}, {site: positives}, small_group_min)[site]
    if hidden.any:
        reason = f"fewer than {small_group_min} rows" if hidden.size else "few positives or negatives"
        warnings.append(f"external site {site}: {reason}; suppressed")
        return ExternalSiteResult(
            site=site,
            suppressed=True,
            count_display=count_text(size, hidden.size, minimum=small_group_min, below_minimum=hidden.size),
            n=None if hidden.size else size,
            positives=None,
            positives_display=count_text(
                positives, True, minimum=small_group_min, below_minimum=positives < small_group_min
            ),
            metrics=None,
            one_class_resamples=None,
        )
    sample, order = sorted_sample(outcomes, scores, threshold)
    view = View(sample)
    draw_resamples(sample.n, [view], n_resamples=n_resamples, seed=seed, clusters=clusters.reordered(order))
    draws = view.collected()
    metrics, _ = intervals_of(sample, draws, confidence)
    one_class = one_class_resamples(draws)
    if one_class:
        warnings.append(f"external site {site}: {one_class} resamples had one outcome class")
    return ExternalSiteResult(
        site=site,
        suppressed=False,
        count_display=str(sample.n),
        n=sample.n,
        positives=positives,
        positives_display=str(positives),
        metrics=metrics,
        one_class_resamples=one_class,
        resampling=clusters.describe(n_resamples),
    )


_BOUNDS = ("estimate", "low", "high")


def meets_minimums(report: ValidationReport, minimums: dict[str, float]) -> list[str]:
    """Names of the overall criteria the report fails, in the order given.

    A key is ``<metric>_<estimate|low|high>`` (a bare ``<metric>`` means its estimate), and the
    value must be at least the bound, e.g. ``{"auroc_low": 0.6}``; a key ending in ``_max``
    bounds from above instead, e.g. ``{"ece_high_max": 0.1}``. An undefined value fails.
    Raises InvalidInput for a key naming no metric.
    """
    failed = []
    for key, bound in minimums.items():
        name, upper = (key[: -len("_max")], True) if key.endswith("_max") else (key, False)
        metric, part = name, "estimate"
        for candidate in _BOUNDS:
            if name.endswith(f"_{candidate}"):
                metric, part = name[: -len(candidate) - 1], candidate
                break
        interval = report.overall.metrics.get(metric)
        if interval is None:
            raise InvalidInput(f"minimum {key!r} names no metric of the report")
        value = getattr(interval, part)
        if value is None or (value > bound if upper else value < bound):
            failed.append(key)
    return failed
