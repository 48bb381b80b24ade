"""``vitalops monitor run``: every registered metric of a model, for each complete window.

A run reads the model's predictions in the range once, aggregates them (``monitoring.aggregates``),
then for each window in time order computes every metric of every version and site from the
aggregates and the version's training reference, and writes the window's results with one audit
event in one transaction. Results are upserted on their natural key, so running a window again
changes nothing but ``computed_at``; a run that dies midway has committed the windows before the
one it died in, and the next run computes the rest (and the committed ones again, to the same values).

Only complete windows are computed (``window_end <= until``, default now); performance and
calibration only for windows whose label horizon has passed (``window_end + horizon <= now``).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from vitalops.artifacts import ArtifactStore
from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import as_utc, utcnow
from vitalops.db import Database
from vitalops.db.tables.registry import ModelRow, ModelVersionRow
from vitalops.errors import InvalidInput, NotFound
from vitalops.features.definitions import DatasetSpec
from vitalops.monitoring import aggregates as agg
from vitalops.monitoring.fairness import FairnessCounts, fairness_counts, fairness_metrics, subgroup_plan
from vitalops.monitoring.lake_labels import lake_outcomes
from vitalops.monitoring.metrics import AUROC_GAP_MIN, MIN_CLASS_ROWS, MIN_GAP_PATIENTS, MIN_ROWS_DRIFT, get_metric
from vitalops.monitoring.operations import (
    OperationsCounts,
    error_rate_metrics,
    operations_counts,
    operations_metrics,
    review_queue_metrics,
)
from vitalops.monitoring.reference import Reference, ensure_reference
from vitalops.monitoring.results import MetricResult, upsert
from vitalops.monitoring.site_variance import site_outliers
from vitalops.monitoring.stats import (
    ROWS_INDEPENDENT,
    VITALOPS_P,
    VITALOPS_PSI,
    VITALOPS_WASSERSTEIN,
    Independence,
    chi_square,
    evidently_rule,
    independent_share,
    ks_2samp,
    psi,
    vitalops_rule,
)

_UNITS = {"h": "hours", "d": "days"}
#: Windows one run computes at most (a year of days); a wider range is refused, not truncated.
MAX_WINDOWS = 400
MISSING_RATE_CHANGE = 0.1
FLAG_RATE_RATIO = (0.8, 1.25)
OUT_OF_RANGE_MAX = 0.02
FRESHNESS_HOURS_MAX = 24.0
CALIBRATION_INTERCEPT_MAX = 0.5
CALIBRATION_SLOPE = (0.7, 1.3)
BOOTSTRAP_RESAMPLES = 200
_ESTIMATED = ("auroc", "sensitivity", "specificity", "ppv")
#: Performance and calibration families, by the validation metric each reports.
_PERFORMANCE = {
    "performance.auroc": "auroc", "performance.brier": "brier", "performance.sensitivity": "sensitivity",
    "performance.specificity": "specificity", "performance.ppv": "ppv",
    "calibration.intercept": "calibration_intercept", "calibration.slope": "calibration_slope",
}


def parse_window(text: str) -> timedelta:
    """``1d``, ``7d`` or ``6h`` as a window length (whole hours, dividing a day or whole days)."""
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit() or int(number) == 0:
        raise InvalidInput(f"--window takes a number of hours or days (6h, 1d, 7d), not {text[:20]!r}",
                           details={"field": "window"})
    window = timedelta(**{_UNITS[unit]: int(number)})
    if unit == "h" and 24 % int(number):
        raise InvalidInput("a window in hours must divide a day (1h, 2h, 3h, 4h, 6h, 8h, 12h)",
                           details={"field": "window"})
    return window


@dataclass
class _Context:
    model: str
    lake_root: str
    references: dict[int, Reference | None]
    thresholds: dict[int, float]
    horizons: dict[int, timedelta | None]
    now: datetime


def run_monitoring(
    database: Database,
    actor: Principal,
    *,
    lake_root: str,
    store: ArtifactStore,
    model: str | None = None,
    site: str | None = None,
    window: timedelta = timedelta(days=1),
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    engine: str = "local",
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Compute every metric for each complete window of each model (or ``model``) and store them.
    The aggregation runs in this process or on the Dask cluster at ``scheduler`` (``engine="dask"``);
    both give the same results.

    Needs ``monitoring:run``. Raises NotFound for an unknown model, InvalidInput for a bad range.
    Returns a summary: run id, windows computed, results written, and the flagged results.
    """
    authorize(database, actor, Permission.MONITORING_RUN, object_type="monitoring", object_id=model or "all")
    if engine not in agg.ENGINES or (engine == "dask" and not scheduler):
        raise InvalidInput("--engine is local, or dask with --scheduler", details={"field": "engine"})
    now = as_utc(now or utcnow())
    until = min(as_utc(until), now) if until is not None else now
    run_id = f"mon_{uuid.uuid4().hex}"
    with database.read_session() as session:
        names = [model] if model is not None else list(session.scalars(select(ModelRow.name).order_by(ModelRow.name)))
        if model is not None and session.scalar(select(ModelRow.id).where(ModelRow.name == model)) is None:
            raise NotFound(f"no model '{model}'", details={"field": "model"})
    summary: dict[str, Any] = {"run_id": run_id, "window": _window_text(window), "models": [], "flagged": []}
    for name in names:
        summary["models"].append(_run_model(database, actor, name, lake_root=lake_root, store=store, site=site,
                                            window=window, since=since, until=until, now=now, run_id=run_id,
                                            flagged=summary["flagged"], engine=engine, scheduler=scheduler))
    summary["windows"] = sum(m["windows"] for m in summary["models"])
    summary["results"] = sum(m["results"] for m in summary["models"])
    return summary


def _window_text(window: timedelta) -> str:
    hours = int(window.total_seconds() // 3600)
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def _run_model(database: Database, actor: Principal, name: str, *, lake_root: str, store: ArtifactStore,
               site: str | None, window: timedelta, since: datetime | None, until: datetime, now: datetime,
               run_id: str, flagged: list[dict[str, Any]], engine: str, scheduler: str | None) -> dict[str, Any]:
    window_us = int(window.total_seconds()) * 1_000_000
    with database.session() as session:  # references are computed and stored once per version
        model_row = session.scalar(select(ModelRow).where(ModelRow.name == name))
        assert model_row is not None
        if since is None:
            since = agg.first_prediction_at(session, lake_root, name) or until
        start_us = agg.epoch_us(as_utc(since)) // window_us * window_us
        end_us = agg.epoch_us(until) // window_us * window_us
        if (end_us - start_us) // window_us > MAX_WINDOWS:
            raise InvalidInput(f"the range holds more than {MAX_WINDOWS} windows; narrow --since or widen --window",
                               details={"field": "since"})
        start, end = _moment(start_us), _moment(end_us)
        versions = list(session.scalars(select(ModelVersionRow).where(ModelVersionRow.model_id == model_row.id)))
        specs = {v.number: spec for v in versions if (spec := _definitions(session, v)) is not None}
        context = _Context(name, lake_root, {}, {v.number: v.threshold for v in versions},
                           {v.number: _horizon(specs.get(v.number)) for v in versions}, now)
        predictions = agg.prediction_rows(session, lake_root, name, start, end, site)
        present = set(predictions["version"].to_pylist())
        for version in versions:
            if version.number in present:
                context.references[version.number] = ensure_reference(session, store, version.id)
        names = {v.number: _feature_names(v) for v in versions}
        outcomes = agg.merge_outcomes(agg.posted_outcomes(session, predictions),
                                      lake_outcomes(lake_root, specs, predictions, now=now))
        labelled = agg.labelled_predictions(predictions, window_us, context.thresholds, outcomes)
        feedback = agg.feedback_counts(session, predictions, window_us)
        plans = {v.number: plan for v in versions if (plan := subgroup_plan(v.report_json)) is not None}
        fairness = fairness_counts(lake_root, predictions, window_us, plans, context.thresholds, outcomes)
        operations = operations_counts(session, name, predictions, window_us, start, end, site=site)
    aggregates = agg.aggregate_predictions(predictions, window_us, names, engine=engine, scheduler=scheduler)
    aggregates.patients = agg.distinct_patients(predictions, window_us)
    sites = sorted({key[1] for key in aggregates.volume} | ({site} if site else set()))
    quality = agg.aggregate_quality(lake_root, sites, start, end, window_us)
    written = windows = 0
    statuses = dict.fromkeys(("ok", "insufficient_data", "flagged"), 0)
    for window_start in range(start_us, end_us, window_us):
        results = _window_results(context, aggregates, labelled, feedback, quality, sites, window_start, window_us,
                                  fairness, operations)
        with database.session() as session:
            counts = upsert(session, results, run_id=run_id, computed_at=utcnow())
            flags = [r for r in results if r.status == "flagged"]
            append(session, actor=actor, action="monitoring.window_computed", object_type="model", object_id=name,
                   payload={"run_id": run_id, "window_start": _moment(window_start).isoformat(),
                            "window_end": _moment(window_start + window_us).isoformat(), "results": len(results),
                            "flagged": len(flags), **counts})
        flagged.extend({"metric_id": r.metric_id, "model": r.model, "version": r.version, "site": r.site,
                        "window_start": r.window_start.isoformat(), "value": r.value} for r in flags)
        for result in results:
            statuses[result.status] += 1
        written += len(results)
        windows += 1
    return {"model": name, "windows": windows, "results": written, "statuses": statuses,
            "since": start.isoformat(), "until": end.isoformat()}


def _moment(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def _feature_names(version: ModelVersionRow) -> list[str]:
    from vitalops.registry.schemas import Signature

    return list(Signature.model_validate_json(version.signature_json).feature_names)


def _definitions(session: Session, version: ModelVersionRow) -> DatasetSpec | None:
    """The version's registered definitions (None when they are not registered here)."""
    from vitalops.features.definition_sets import get_definitions

    try:
        return get_definitions(session, version.definitions_version)
    except NotFound:
        return None


def _horizon(spec: DatasetSpec | None) -> timedelta | None:
    """The label horizon of the version's definitions (None when they are unknown)."""
    from vitalops.features.definitions import duration_us

    return None if spec is None else timedelta(microseconds=duration_us(spec.label.horizon))


def _window_results(context: _Context, aggregates: agg.WindowAggregates, labelled: dict[agg.Key, agg.Labelled],
                    feedback: dict[agg.Key, tuple[int, int]], quality: agg.QualityAggregates, sites: list[str],
                    window_start: int, window_us: int, fairness: FairnessCounts | None = None,
                    operations: OperationsCounts | None = None) -> list[MetricResult]:
    begin, end = _moment(window_start), _moment(window_start + window_us)
    results: list[MetricResult] = []

    def add(metric_id: str, version: int, site: str, value: float | None, n: int, status: str,
            details: dict[str, Any]) -> None:
        definition = get_metric(metric_id)
        if value is not None and not math.isfinite(value):
            value, status = None, "insufficient_data"
        if n < definition.min_n and definition.min_n > 0:
            value, status = None, "insufficient_data"
            details = {**details, "min_n": definition.min_n}
        results.append(MetricResult(metric_id=metric_id, model=context.model, version=version, site=site,
                                    window_start=begin, window_end=end, value=value, n=n, status=status,  # type: ignore[arg-type]
                                    details=details))

    keys = sorted(key for key in aggregates.volume if key[2] == window_start)
    for version, site, _ in keys:
        key = (version, site, window_start)
        mark = len(results)
        _prediction_metrics(add, context, aggregates, key)
        _performance_metrics(add, context, labelled.get(key), key, end)
        _auroc_gap(add, results[mark:], version, site)
        items, overrides = feedback.get(key, (0, 0))
        add("workflow.override_rate", version, site, overrides / items if items else None, items, "ok",
            {"feedback": items, "overridden": overrides})
        if fairness is not None:
            fairness_metrics(add, fairness, key, labels_matured=_labels_matured(context, version, end))
        if operations is not None:
            operations_metrics(add, operations, key)
    if operations is not None:
        error_rate_metrics(add, operations, window_start)
    for site in sites:
        _quality_metrics(add, quality, site, window_start, end)
        if operations is not None:
            review_queue_metrics(add, operations, site, window_start + window_us)
    site_outliers(add, list(results))
    return results


def _prediction_metrics(add: Any, context: _Context, aggregates: agg.WindowAggregates, key: agg.Key) -> None:
    version, site, _ = key
    volume = aggregates.volume[key]
    modes = aggregates.modes.get(key, [])
    add("ops.volume", version, site, float(volume), volume, "ok", {"modes": modes})
    n_latency, *quantiles = aggregates.latency[key]
    for label, value in zip(("p50", "p95", "p99"), quantiles, strict=True):
        add(f"ops.latency_ms.{label}", version, site, value, n_latency, "ok" if value is not None else
            "insufficient_data", {"method": "quantile_cont (linear)", "rows_with_latency": n_latency})
    reference = context.references.get(version)
    if reference is None:
        for family in ("prediction_drift.score_psi", "prediction_drift.flag_rate"):
            add(family, version, site, None, volume, "insufficient_data", {"reason": "no training reference"})
        return
    scores = aggregates.scores[key]
    independent = (reference.independent_share, independent_share(aggregates.patients.get(key), volume))
    if scores.n < MIN_ROWS_DRIFT:  # too few rows for deciles: said so without computing the statistics
        for family in ("prediction_drift.score_psi", *(f"estimated_performance.{name}" for name in _ESTIMATED)):
            add(family, version, site, None, scores.n, "insufficient_data", {})
    else:
        score_psi = psi(reference.scores.histogram(reference.score_edges), scores.histogram(reference.score_edges))
        _, score_p = ks_2samp(reference.scores, scores, independent=independent)
        add("prediction_drift.score_psi", version, site, score_psi, scores.n,
            "flagged" if score_psi >= VITALOPS_PSI and score_p < VITALOPS_P else "ok",
            {"ks_pvalue": score_p, "bins": "reference score deciles", "threshold": VITALOPS_PSI,
             "reference_fingerprint": reference.fingerprint, **_sizes(reference, aggregates, key)})
        _estimated_metrics(add, reference, scores, version, site,
                           context.thresholds.get(version, reference.threshold))
    flag_rate = aggregates.flagged[key] / volume
    ratio = flag_rate / reference.flag_rate if reference.flag_rate > 0 else math.inf
    reference_flags = round(reference.flag_rate * reference.rows)
    _, flag_p = chi_square(np.array([reference.rows - reference_flags, reference_flags]),
                           np.array([volume - aggregates.flagged[key], aggregates.flagged[key]]),
                           independent=independent)
    outside = not FLAG_RATE_RATIO[0] <= ratio <= FLAG_RATE_RATIO[1]
    add("prediction_drift.flag_rate", version, site, flag_rate, volume,
        "flagged" if outside and flag_p < VITALOPS_P else "ok",
        {"reference_flag_rate": reference.flag_rate, "ratio": ratio if math.isfinite(ratio) else None,
         "chi2_pvalue": flag_p, "bounds": list(FLAG_RATE_RATIO), "threshold": context.thresholds.get(version)})
    for name, current in aggregates.features.get(key, {}).items():
        feature = reference.features.get(name)
        if feature is None:
            continue
        _feature_metrics(add, version, site, name, feature.distribution, feature.edges, feature.categorical, current,
                         independent)


def _sizes(reference: Reference, aggregates: agg.WindowAggregates, key: agg.Key) -> dict[str, Any]:
    """The sizes the tests' p-values rest on: rows and distinct patients of each sample."""
    return {"rows": aggregates.volume[key], "patients": aggregates.patients.get(key),
            "reference_rows": reference.rows, "reference_patients": reference.patients}


def _estimated_metrics(add: Any, reference: Reference, scores: Any, version: int, site: str,
                       threshold: float) -> None:
    """CBPE: performance expected from the window's scores under the reference's calibration."""
    from vitalops.monitoring.cbpe import ASSUMPTION, estimate

    if reference.calibration is None:
        for name in _ESTIMATED:
            add(f"estimated_performance.{name}", version, site, None, scores.n, "insufficient_data",
                {"reason": "the reference has one outcome class only"})
        return
    expected = estimate(reference.calibration, scores, threshold)
    for name in _ESTIMATED:
        add(f"estimated_performance.{name}", version, site, expected[name], scores.n, "ok",
            {"method": f"CBPE (isotonic calibration on the version's {reference.calibration_source or 'reference'})",
             "assumption": ASSUMPTION,
             "expected_events": expected["expected_events"], "threshold": threshold})


def _feature_metrics(add: Any, version: int, site: str, name: str, ref: Any, edges: np.ndarray, categorical: bool,
                     current: Any, independent: Independence = ROWS_INDEPENDENT) -> None:
    rate, ref_rate = current.missing_rate, ref.missing_rate
    _, missing_p = chi_square(np.array([ref.n, ref.missing]), np.array([current.n, current.missing]),
                              independent=independent)
    add(f"input_drift.missing_rate/{name}", version, site, rate, current.total,
        "flagged" if abs(rate - ref_rate) >= MISSING_RATE_CHANGE and missing_p < VITALOPS_P else "ok",
        {"reference_missing_rate": ref_rate, "chi2_pvalue": missing_p, "change_threshold": MISSING_RATE_CHANGE})
    if current.n < MIN_ROWS_DRIFT or ref.n == 0:  # too few values for deciles: not computed
        families = ["input_drift.psi", "input_drift.evidently", *([] if categorical else ["input_drift.wasserstein"])]
        for family in families:
            add(f"{family}/{name}", version, site, None, current.n, "insufficient_data", {})
        return
    ours = vitalops_rule(ref, current, edges=edges, independent=independent)
    stats = {**ours.to_dict(), "independent_share": list(independent)}
    if categorical:
        add(f"input_drift.psi/{name}", version, site, ours.statistics["psi"], current.n,
            "flagged" if ours.drift else "ok", {**stats, "binning": "one bin per category"})
    else:
        p, psi_value = ours.statistics["ks_pvalue"], ours.statistics["psi"]
        robust = ours.statistics["wasserstein_robust"]
        p = 1.0 if p is None or not math.isfinite(p) else p
        psi_value = 0.0 if psi_value is None else psi_value
        add(f"input_drift.psi/{name}", version, site, psi_value, current.n,
            "flagged" if p < VITALOPS_P and psi_value >= VITALOPS_PSI else "ok",
            {**stats, "binning": "reference deciles", "threshold": VITALOPS_PSI})
        add(f"input_drift.wasserstein/{name}", version, site, robust, current.n,
            "flagged" if robust is not None and p < VITALOPS_P and robust >= VITALOPS_WASSERSTEIN else "ok",
            {**stats, "normalization": "reference IQR / 1.349", "threshold": VITALOPS_WASSERSTEIN})
    theirs = evidently_rule(ref, current)
    add(f"input_drift.evidently/{name}", version, site, theirs.value, current.n,
        "flagged" if theirs.drift else "ok", theirs.to_dict())


def _performance_metrics(add: Any, context: _Context, rows: agg.Labelled | None, key: agg.Key,
                         window_end: datetime) -> None:
    from vitalops.validation.bootstrap import bootstrap_intervals

    version, site, _ = key
    horizon = context.horizons.get(version)
    if horizon is None or not _labels_matured(context, version, window_end):
        return  # labels not mature (or the horizon is unknown): nothing is written yet
    families = _PERFORMANCE
    n = 0 if rows is None else int(rows.outcomes.shape[0])
    positives = 0 if rows is None else int(rows.outcomes.sum())
    positive_patients = 0 if rows is None else len(set(rows.patient_keys[rows.outcomes == 1].tolist()))
    base = {"labelled": n, "positives": positives, "positive_patients": positive_patients,
            "label_horizon_hours": horizon.total_seconds() / 3600}
    if rows is None or positives < MIN_CLASS_ROWS or n - positives < MIN_CLASS_ROWS:
        for family in families:
            add(family, version, site, None, n, "insufficient_data", {**base, "min_class_rows": MIN_CLASS_ROWS})
        return
    intervals = bootstrap_intervals(rows.outcomes, rows.scores, rows.decisions_threshold,
                                    patient_keys=rows.patient_keys, n_resamples=BOOTSTRAP_RESAMPLES, seed=0)
    patients = len(set(rows.patient_keys.tolist()))
    for family in families:
        interval = intervals[_PERFORMANCE[family]]
        status = "ok"
        if family == "calibration.intercept" and interval.estimate is not None and interval.low is not None \
                and interval.high is not None:
            excludes = interval.low > 0 or interval.high < 0
            status = "flagged" if abs(interval.estimate) >= CALIBRATION_INTERCEPT_MAX and excludes else "ok"
        if family == "calibration.slope" and interval.estimate is not None and interval.low is not None \
                and interval.high is not None:
            excludes = interval.low > 1 or interval.high < 1
            inside = CALIBRATION_SLOPE[0] <= interval.estimate <= CALIBRATION_SLOPE[1]
            status = "flagged" if not inside and excludes else "ok"
        add(family, version, site, interval.estimate, n, status,
            {**base, "low": interval.low, "high": interval.high,
             "resampled": f"{patients} patients with replacement, {BOOTSTRAP_RESAMPLES} resamples"})


def _auroc_gap(add: Any, results: list[MetricResult], version: int, site: str) -> None:
    """``performance.auroc_gap`` of a version at a site from its measured and estimated AUROC among
    ``results`` (the key's results of this window; nothing when the labels have not matured: no
    measured value is written then)."""
    found = {r.metric_id: r for r in results if r.version == version and r.site == site
             and r.metric_id in ("performance.auroc", "estimated_performance.auroc")}
    measured, estimated = found.get("performance.auroc"), found.get("estimated_performance.auroc")
    if measured is None:
        return
    if measured.value is None or estimated is None or estimated.value is None:
        add("performance.auroc_gap", version, site, None, measured.n, "insufficient_data",
            {"reason": "the measured or the estimated AUROC is not known for this window"})
        return
    events = measured.details.get("positive_patients") or 0
    if events < MIN_GAP_PATIENTS:  # a handful of patients with the outcome: the interval is not to be trusted
        add("performance.auroc_gap", version, site, None, measured.n, "insufficient_data",
            {"positive_patients": events, "min_positive_patients": MIN_GAP_PATIENTS})
        return
    gap = measured.value - estimated.value
    high = measured.details.get("high")
    below = high is not None and high < estimated.value
    add("performance.auroc_gap", version, site, gap, measured.n,
        "flagged" if gap <= -AUROC_GAP_MIN and below else "ok",
        {"measured": measured.value, "measured_low": measured.details.get("low"), "measured_high": high,
         "estimated": estimated.value, "positives": measured.details.get("positives"), "positive_patients": events,
         "threshold": AUROC_GAP_MIN, "assumption": "CBPE assumes no concept shift; this gap is where it fails"})


def _labels_matured(context: _Context, version: int, window_end: datetime) -> bool:
    """Whether the window's label horizon has passed (False when the horizon is unknown)."""
    horizon = context.horizons.get(version)
    return horizon is not None and window_end + horizon <= context.now


def _quality_metrics(add: Any, quality: agg.QualityAggregates, site: str, window_start: int, end: datetime) -> None:
    for (fact_site, w, concept), (n, outside) in sorted(quality.ranges.items()):
        if fact_site == site and w == window_start:
            rate = outside / n
            add(f"quality.out_of_range_rate/{concept}", 0, site, rate, n,
                "flagged" if rate >= OUT_OF_RANGE_MAX else "ok", {"out_of_range": outside,
                                                                  "threshold": OUT_OF_RANGE_MAX})
    for (fact_site, w, concept), (n, other) in sorted(quality.units.items()):
        if fact_site == site and w == window_start:
            add(f"quality.unit_mix/{concept}", 0, site, other / n, n, "ok", {"non_canonical": other})
    latest = [us for w, us in quality.latest_known.get(site, []) if w <= window_start]
    if latest:
        hours = (agg.epoch_us(end) - max(latest)) / 3.6e9
        add("quality.freshness_hours", 0, site, hours, 1, "flagged" if hours > FRESHNESS_HOURS_MAX else "ok",
            {"threshold_hours": FRESHNESS_HOURS_MAX})
    else:
        add("quality.freshness_hours", 0, site, None, 0, "insufficient_data", {"reason": "no facts known yet"})

