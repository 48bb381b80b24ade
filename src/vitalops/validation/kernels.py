"""Weighted metric kernels over a score-sorted sample: the bootstrap's hot path.

A bootstrap resample is a vector of counts (how often each row was drawn). With the rows
sorted by score once, every metric of a resample is a cumulative sum or a matrix product of
its counts, so a block of resamples is scored with a few array passes and no resample is
ever materialised. Point estimates use the same kernels with all counts equal to one.

Definitions (each agrees with scikit-learn on weighted data):
- AUROC: the Mann-Whitney probability, ties counted one half (``roc_auc_score``).
- AUPRC: average precision, the step-wise sum over distinct thresholds of recall increase
  times precision (``average_precision_score``).
- Threshold metrics flag a patient when ``score >= threshold``.
- ECE: ``sum_b |sum of scores in b - positives in b| / n`` over equal-count bins whose edges
  are the sample's score quantiles (the bins of ``calibration_curve(strategy="quantile")``);
  a bootstrap keeps the original sample's bins.
- Calibration intercept and slope: ``y ~ intercept + slope * logit(score)``, fitted by
  maximum likelihood on the sample, and refitted on every resample (a logistic fit weighted by
  the resample's counts, all resamples at once by Newton's method; see
  ``calibration_fit.refit_calibration_lines``). A one-step approximation is not used: on small
  samples it is off by more than the interval is wide.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from vitalops.validation.calibration_fit import STOP_LARGE, STOP_SMALL, CalibrationRefit, fit_calibration_line, logit

# Cells (resamples x rows) refitted at a time: about 1 MB per working array, which stays in cache.
_REFIT_CHUNK_CELLS = 131_072
# Samples at least this large start each resample's calibration refit from the one-step estimate.
_ONE_STEP_START_ROWS = 2_000
THRESHOLD_METRICS = ("sensitivity", "specificity", "ppv", "npv", "flag_rate")
RESAMPLED_METRICS = (
    "auroc",
    "auprc",
    "brier",
    "calibration_intercept",
    "calibration_slope",
    "ece",
    *THRESHOLD_METRICS,
    "prevalence",
)


def quantile_bin_bounds(sorted_scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Start positions of each equal-count bin in ``sorted_scores`` (plus ``n`` at the end).

    Edges are the score percentiles, rows are assigned as ``calibration_curve`` assigns them;
    a bin can be empty when scores tie across an edge.
    """
    edges = np.percentile(sorted_scores, np.linspace(0.0, 1.0, n_bins + 1) * 100.0)
    bin_ids = np.searchsorted(edges[1:-1], sorted_scores)
    return np.searchsorted(bin_ids, np.arange(n_bins + 1), side="left")


class SortedSample:
    """One sample's rows sorted by score, with every position the kernels look up.

    Counts come in as ``(rows, resamples)``: the kernels need each resample's cumulative count
    only at "key" positions (tie blocks of the positives, the threshold, the decision-curve
    thresholds, the calibration bins), so one sparse product turns the counts into segment sums
    between keys and a cumulative sum over those few segments gives every confusion matrix.
    """

    def __init__(
        self,
        sorted_outcomes: np.ndarray,
        sorted_scores: np.ndarray,
        *,
        threshold: float,
        net_benefit_thresholds: np.ndarray | None = None,
        n_bins: int = 10,
        columns: np.ndarray | None = None,
        n_columns: int | None = None,
    ) -> None:
        """``columns`` places this sample's rows among the ``n_columns`` rows of the count
        matrices it will be given (a subgroup inside its cohort); by default it is the whole."""
        n = int(sorted_scores.shape[0])
        self.columns = np.arange(n) if columns is None else np.asarray(columns)
        self.n_columns = n if n_columns is None else int(n_columns)
        self.n = n
        self.outcomes = sorted_outcomes
        self.scores = sorted_scores
        self.positions = np.flatnonzero(sorted_outcomes == 1)
        _, first, repeats = np.unique(sorted_scores, return_index=True, return_counts=True)
        block = np.repeat(np.arange(first.shape[0]), repeats)
        block_start = first[block][self.positions]
        block_end = block_start + repeats[block][self.positions]
        nb = np.asarray([] if net_benefit_thresholds is None else net_benefit_thresholds, dtype=np.float64)
        self.net_benefit_thresholds = nb
        threshold_position = np.searchsorted(sorted_scores, threshold, side="left")
        net_benefit_positions = np.searchsorted(sorted_scores, nb, side="left")
        bin_bounds = quantile_bin_bounds(sorted_scores, n_bins)
        # A positive alone in its tie block needs no key at the block's end (nothing is tied).
        tied_ends = block_end[block_end - block_start > 1]
        keys = np.unique(
            np.concatenate([[0, n, threshold_position], block_start, tied_ends, net_benefit_positions, bin_bounds])
        )
        self.key_of_block_start = np.searchsorted(keys, block_start)
        self.key_of_block_end = np.searchsorted(keys, block_end)
        self.tied_positives = np.flatnonzero(block_end - block_start > 1)
        self.key_of_threshold = int(np.searchsorted(keys, threshold_position))
        self.key_of_net_benefit = np.searchsorted(keys, net_benefit_positions)
        self.key_of_bins = np.searchsorted(keys, bin_bounds)
        self.n_segments = keys.shape[0] - 1
        rows = np.arange(n)
        segment = np.searchsorted(keys, rows, side="right") - 1
        bin_of_row = np.searchsorted(bin_bounds, rows, side="right") - 1
        positive = sorted_outcomes == 1
        x = logit(sorted_scores)
        self._refit = CalibrationRefit(x, sorted_outcomes, stop=STOP_LARGE if n >= _ONE_STEP_START_ROWS else STOP_SMALL)
        self.calibration = fit_calibration_line(sorted_outcomes, sorted_scores)
        intercept, slope = self.calibration
        fitted = 1.0 / (1.0 + np.exp(-(intercept + slope * x)))
        weight = fitted * (1.0 - fitted)
        # The sample's information matrix: the one-step start of a resample's refit scales it by the
        # resample's share of rows (Andrews 2002, Econometrica 70:119); the refit then iterates.
        self.information = (float(weight.sum()), float((weight * x).sum()), float((weight * x * x).sum()))
        self.n_bins = n_bins
        first_linear = 2 * self.n_segments + n_bins
        # Linear statistics over every row: sum p^2, sum fitted, sum fitted * x; over positives:
        # sum p, sum x. Brier = (sum p^2 - 2 sum_pos p + P) / n; the calibration score vector at the
        # sample's line is (P - sum fitted, sum_pos x - sum fitted * x).
        every_row_terms = [sorted_scores * sorted_scores, fitted, fitted * x]
        positive_terms = [sorted_scores[positive], x[positive]]
        n_positive = int(positive.sum())
        # Output rows: counts per segment, positives per segment, summed scores per bin, linear terms.
        output_row = np.concatenate(
            [segment, self.n_segments + segment[positive], 2 * self.n_segments + bin_of_row]
            + [np.full(n, first_linear + index) for index in range(3)]
            + [np.full(n_positive, first_linear + 3 + index) for index in range(2)]
        )
        source_row = np.concatenate([rows, rows[positive], rows] + [rows] * 3 + [rows[positive]] * 2)
        self.summing = sparse.csr_matrix(
            (
                np.concatenate([np.ones(n), np.ones(n_positive), sorted_scores, *every_row_terms, *positive_terms]),
                (output_row, self.columns[source_row]),
            ),
            shape=(first_linear + 5, self.n_columns),
        )
        self._identity_columns = self.n_columns == n and bool(np.array_equal(self.columns, rows))
        self.positive_columns = self.columns[self.positions]

    def metrics(self, counts: np.ndarray, counts_by_resample: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each resampled metric for each column of ``counts`` (``(n_columns, resamples)``, float64).
        ``counts_by_resample`` is the same counts C-ordered as ``(resamples, n_columns)``, when the
        caller holds it (it is made here otherwise).

        Returns arrays of shape ``(resamples,)`` (``net_benefit``: ``(resamples, thresholds)``);
        metrics undefined in a resample (one class, nobody flagged) are NaN.
        """
        resamples = counts.shape[1]
        sums = self.summing @ counts
        cumulative = np.zeros((self.n_segments + 1, resamples))
        np.cumsum(sums[: self.n_segments], axis=0, out=cumulative[1:])
        positive_cumulative = np.zeros((self.n_segments + 1, resamples))
        np.cumsum(sums[self.n_segments : 2 * self.n_segments], axis=0, out=positive_cumulative[1:])
        score_sums = sums[2 * self.n_segments : 2 * self.n_segments + self.n_bins]
        linear = sums[2 * self.n_segments + self.n_bins :]
        positive_counts = counts[self.positive_columns]
        total = cumulative[-1]
        positives = positive_cumulative[-1]
        negatives = total - positives

        with np.errstate(divide="ignore", invalid="ignore"):
            at_start = cumulative[self.key_of_block_start]
            positives_at_start = positive_cumulative[self.key_of_block_start]
            below = at_start - positives_at_start
            tied = np.zeros_like(below)
            if self.tied_positives.shape[0]:
                end_keys = self.key_of_block_end[self.tied_positives]
                tied[self.tied_positives] = (
                    cumulative[end_keys] - positive_cumulative[end_keys] - below[self.tied_positives]
                )
            auroc = np.einsum("ij,ij->j", positive_counts, below + 0.5 * tied) / (positives * negatives)
            flagged_at_block = total - at_start
            true_at_block = positives - positives_at_start
            precision = np.divide(
                true_at_block, flagged_at_block, out=np.zeros_like(true_at_block), where=flagged_at_block > 0
            )
            auprc = np.einsum("ij,ij->j", positive_counts, precision) / positives

            squares, positive_score_sum = linear[0], linear[3]
            brier = (squares - 2.0 * positive_score_sum + positives) / total
            by_resample = np.ascontiguousarray(counts.T) if counts_by_resample is None else counts_by_resample
            intercept, slope = self._refit_calibration(by_resample, positives, linear, total)

            bin_positives = np.diff(positive_cumulative[self.key_of_bins], axis=0)
            ece = np.abs(score_sums - bin_positives).sum(axis=0) / total

            flagged = total - cumulative[self.key_of_threshold]
            true_positives = positives - positive_cumulative[self.key_of_threshold]
            false_positives = flagged - true_positives
            true_negatives = negatives - false_positives
            metrics = {
                "auroc": auroc,
                "auprc": auprc,
                "brier": brier,
                "calibration_intercept": intercept,
                "calibration_slope": slope,
                "ece": ece,
                "sensitivity": true_positives / positives,
                "specificity": true_negatives / negatives,
                "ppv": true_positives / flagged,
                "npv": true_negatives / (total - flagged),
                "flag_rate": flagged / total,
                "prevalence": positives / total,
            }
            if self.net_benefit_thresholds.shape[0]:
                nb_flagged = total - cumulative[self.key_of_net_benefit]
                nb_true = positives - positive_cumulative[self.key_of_net_benefit]
                odds = (self.net_benefit_thresholds / (1.0 - self.net_benefit_thresholds))[:, None]
                metrics["net_benefit"] = ((nb_true - (nb_flagged - nb_true) * odds) / total).T
        return metrics

    def _refit_calibration(
        self,
        counts_by_resample: np.ndarray,
        positives: np.ndarray,
        linear: np.ndarray,
        total: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each resample's calibration line, refitted by Newton's method, a few resamples at a time
        so the working arrays stay in cache. Large samples start from the one-step estimate
        (first-order equal to the refit, so one or two steps finish it); small ones from the
        sample's line, where the one-step estimate can be far off."""
        resamples = counts_by_resample.shape[0]
        start_a = np.full(resamples, self.calibration[0])
        start_b = np.full(resamples, self.calibration[1])
        if self.n >= _ONE_STEP_START_ROWS and all(np.isfinite(self.calibration)):
            fitted_sum, fitted_x_sum, positive_x_sum = linear[1], linear[2], linear[4]
            share = total / self.n
            h_aa, h_ab, h_bb = (share * entry for entry in self.information)
            grad_a, grad_b = positives - fitted_sum, positive_x_sum - fitted_x_sum
            with np.errstate(divide="ignore", invalid="ignore"):
                determinant = h_aa * h_bb - h_ab * h_ab
                one_a = self.calibration[0] + (h_bb * grad_a - h_ab * grad_b) / determinant
                one_b = self.calibration[1] + (h_aa * grad_b - h_ab * grad_a) / determinant
            usable = np.isfinite(one_a) & np.isfinite(one_b)
            start_a = np.where(usable, one_a, start_a)
            start_b = np.where(usable, one_b, start_b)
        intercepts = np.empty(resamples)
        slopes = np.empty(resamples)
        chunk = max(1, _REFIT_CHUNK_CELLS // max(self.n, 1))
        for first in range(0, resamples, chunk):
            last = min(first + chunk, resamples)
            rows = counts_by_resample[first:last]
            weights = rows if self._identity_columns else np.take(rows, self.columns, axis=1)
            intercepts[first:last], slopes[first:last] = self._refit.fit(
                weights,
                (start_a[first:last], start_b[first:last]),
                (positives[first:last], linear[4][first:last], total[first:last]),
            )
        return intercepts, slopes
