"""Time to build the full validation report beside scikit-learn's point metrics alone.

100,000 rows, 1,000 bootstrap resamples, subgroups on sex, age band, race and ethnicity plus
3 sites, and one held-out site of 20,000 rows. The baseline computes the same point metrics
(AUROC, AUPRC, Brier, calibration line, confusion-matrix rates, calibration curve) with
scikit-learn for the cohort and every subgroup, without any interval. Target: report < 20 s.
"""

from __future__ import annotations

import time

import numpy as np
from _results import record
from scipy.special import expit
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, confusion_matrix, roc_auc_score

from vitalops.validation.calibration_fit import logit
from vitalops.validation.fairness import age_band
from vitalops.validation.report import build_report
from vitalops.validation.thresholds import ThresholdRule

ROWS = 100_000
RESAMPLES = 1_000


def cohort(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    return {
        "y": rng.binomial(1, expit(1.4 * signal - 2.2)),
        "score": expit(signal - 2.0),
        "sex": rng.choice(["female", "male"], n),
        "age_band": age_band(rng.uniform(18, 100, n)),
        "race": rng.choice(["white", "black", "asian", "other"], n, p=[0.6, 0.25, 0.13, 0.02]),
        "ethnicity": rng.choice(["hispanic", "not hispanic"], n, p=[0.2, 0.8]),
        "site": rng.choice(["north", "south", "east"], n),
    }


def sklearn_point_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> None:
    roc_auc_score(y, score)
    average_precision_score(y, score)
    brier_score_loss(y, score)
    LogisticRegression(C=np.inf, max_iter=1000).fit(logit(score)[:, None], y)
    confusion_matrix(y, score >= threshold)
    calibration_curve(y, score, n_bins=10, strategy="quantile")


def main() -> None:
    data = cohort(ROWS, seed=1)
    held_out = cohort(20_000, seed=2)
    attributes = ("sex", "age_band", "race", "ethnicity")
    started, cpu_started = time.perf_counter(), time.process_time()
    report = build_report(
        data["y"],
        data["score"],
        threshold_rule=ThresholdRule("sensitivity", 0.8),
        groups={name: data[name] for name in attributes},
        sites=data["site"],
        external={"west": (held_out["y"], held_out["score"])},
        n_resamples=RESAMPLES,
        seed=0,
    )
    report_seconds, report_cpu = time.perf_counter() - started, time.process_time() - cpu_started

    started, cpu_started = time.perf_counter(), time.process_time()
    sklearn_point_metrics(data["y"], data["score"], report.threshold)
    for name in (*attributes, "site"):
        for group in np.unique(data[name]):
            members = data[name] == group
            sklearn_point_metrics(data["y"][members], data["score"][members], report.threshold)
    sklearn_point_metrics(held_out["y"], held_out["score"], report.threshold)
    baseline_seconds, baseline_cpu = time.perf_counter() - started, time.process_time() - cpu_started

    auroc = report.overall.metrics["auroc"]
    print(f"rows {ROWS:,}, resamples {RESAMPLES:,}, subgroups {len(report.subgroups)}, external sites 1")
    print(f"AUROC {auroc.estimate:.4f} (95% CI {auroc.low:.4f}-{auroc.high:.4f})")
    print(f"full validation report with intervals: {report_seconds:6.2f} s  (CPU {report_cpu:5.2f} s; target < 20 s)")
    print(f"scikit-learn point metrics, no intervals: {baseline_seconds:6.2f} s  (CPU {baseline_cpu:5.2f} s)")
    print(f"report / baseline: {report_seconds / baseline_seconds:5.1f}x for {RESAMPLES:,} resamples")
    record("validation.report_vs_point_metrics", report_seconds / baseline_seconds, better="lower",
           unit="x baseline", note=f"full report with {RESAMPLES:,} resamples / scikit-learn point metrics only")


if __name__ == "__main__":
    main()
