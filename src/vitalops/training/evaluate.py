"""Score rows with a fitted model and build its validation report through ``vitalops.validation``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vitalops.artifacts import Predictor
from vitalops.errors import InvalidInput
from vitalops.training.datasets import Rows
from vitalops.validation.fairness import age_band
from vitalops.validation.report import build_report, meets_minimums
from vitalops.validation.thresholds import ThresholdRule, choose_threshold


@dataclass(frozen=True)
class Evaluation:
    report: Any
    report_json: dict[str, Any]
    report_hash: str
    threshold: float
    failures: list[str]


def subgroup_attributes(rows: Rows) -> dict[str, np.ndarray]:
    """The report's subgroup attributes: sex, age band, race, ethnicity (ages banded, never raw)."""
    groups: dict[str, np.ndarray] = {}
    for name, values in rows.attributes.items():
        if name == "age":
            ages = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
            groups["age_band"] = np.asarray(age_band(ages), dtype=object)
        else:
            groups[name] = np.asarray(["unknown" if v is None else str(v) for v in values], dtype=object)
    return groups


def require_both_classes(rows: Rows, *, what: str) -> None:
    classes = np.unique(rows.labels)
    if classes.shape[0] < 2:
        raise InvalidInput(f"the {what} rows have only one outcome class ({len(rows)} rows); a classifier needs both")


def evaluate(
    predictor: Predictor,
    *,
    training: Rows,
    test: Rows,
    external: Rows,
    rule: ThresholdRule,
    patient_days_per_row: float,
    n_resamples: int,
    seed: int,
    small_group_min: int,
    minimums: dict[str, float],
    threshold: float | None = None,
) -> Evaluation:
    """Choose the threshold on the training rows (unless given), then validate on the test rows, with
    each held-out site as external validation; intervals resample patients (by ``patient_keys``).
    ``failures`` lists the minimums the report misses."""
    require_both_classes(test, what="temporal test")
    from_training = threshold is None
    if threshold is None:
        threshold = choose_threshold(
            training.labels,
            predictor.predict_proba(training.features),
            rule,
            patient_days=len(training) * patient_days_per_row,
        )
    external_sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    external_keys: dict[str, np.ndarray | None] = {}
    for site in sorted({str(s) for s in external.sites}):
        rows = external.subset(external.sites == site)
        external_sets[site] = (rows.labels, predictor.predict_proba(rows.features))
        external_keys[site] = rows.patient_keys
    report = build_report(
        test.labels,
        predictor.predict_proba(test.features),
        threshold_rule=rule,
        groups=subgroup_attributes(test),
        sites=test.sites,
        external=external_sets,
        n_resamples=n_resamples,
        seed=seed,
        small_group_min=small_group_min,
        patient_days=len(test) * patient_days_per_row,
        threshold=threshold,
        threshold_from_training=from_training,
        patient_keys=test.patient_keys,
        external_patient_keys=external_keys,
    )
    return Evaluation(
        report=report,
        report_json=report.model_dump(mode="json"),
        report_hash=report.content_hash(),
        threshold=float(threshold),
        failures=list(meets_minimums(report, minimums)),
    )
