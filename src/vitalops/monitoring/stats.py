"""Drift statistics computed from small aggregates, and the two named rules that judge them.

Every statistic here takes ``Distribution`` aggregates (the sorted distinct values of a feature
with their counts, and its missing count) or histograms on the reference's bins, never rows. The
engine builds them with one DuckDB ``GROUP BY`` per window, so the cost of a statistic depends on
the distinct values, not on the rows.

The statistics, and exactly what each computes:

* **PSI**: over the reference's quantile bins (deciles by default: the inner edges are
  ``np.quantile(reference, [0.1, ..., 0.9])``, linear interpolation, ties merged; the outer bins
  are open; a value equal to an edge falls in the bin above it), each share floored at 1e-4 so an
  empty bin stays finite (``governance.criteria.psi_of_counts``, the PSI the PCCP gate uses).
* **KS**: the two-sample Kolmogorov-Smirnov statistic, exact on the two value distributions (both
  empirical CDFs evaluated at every distinct value of either sample, so ties are handled as
  ``scipy.stats.ks_2samp`` does); the p-value is the asymptotic one of ``ks_2samp(method="asymp")``
  (the Kolmogorov distribution at ``round(n * m / (n + m))``). A reference compressed to quantile
  points (``Distribution.compressed``) makes the statistic approximate, off by at most the largest
  share of one of its points.
* **Wasserstein** (earth mover's distance, W1) on the two weighted value sets
  (``scipy.stats.wasserstein_distance``). *Normed* as Evidently normalizes it: divided by the
  reference's standard deviation (``ddof=0``). *Robust*: divided by the reference's IQR / 1.349
  (equal to the standard deviation for a normal distribution).
* **Jensen-Shannon distance** (``scipy.spatial.distance.jensenshannon``, natural log) between two
  histograms on the same bins.
* **Chi-square** for a categorical feature: the two-sample test of homogeneity on the 2 x K table
  of counts (``scipy.stats.chi2_contingency``); Evidently's rule uses its goodness-of-fit form
  instead (current counts against the reference's shares), which treats the reference as exact.

The rules (``DRIFT_RULES``):

* ``evidently``: Evidently 0.7's default, for comparability. Reference of 1,000 rows or fewer:
  KS p < 0.05 for a numeric feature, chi-square (goodness of fit) p < 0.05 for a categorical one,
  the pooled two-proportion Z test p < 0.05 for one with two categories; above 1,000 rows: normed
  Wasserstein >= 0.1 for a numeric feature, Jensen-Shannon (raw shares, no floor) >= 0.1 for a
  categorical one. A feature with at most 5 distinct values is categorical.
* ``vitalops`` (our default): an effect size that matters *and* evidence that it is not noise.
  A numeric feature drifts when KS p < 0.01 and either PSI >= 0.2 or the robust Wasserstein
  >= 0.1; a categorical one when chi-square (homogeneity) p < 0.01 and either PSI over its
  categories >= 0.2 or a category's share moved by 0.1 or more. Why: at large reference sizes
  Evidently's rule has no significance test, so a small window (a quiet night at a small site)
  flags pure noise; and its normalization by the standard deviation lets the heavy tails of lab
  values (creatinine in dialysis patients, lactate in shock) hide a shift of the bulk, such as a
  0.3 mg/dL creatinine calibration offset (the KDIGO threshold for acute kidney injury) in a
  third of patients. The IQR is not moved by the few extreme patients, so the same effect
  threshold catches it. PSI 0.2 sits between the conventional "moderate" (0.1) and "major" (0.25)
  bands of credit scoring, where PSI comes from, and matches the PCCP's behaviour bound scale.
  Its tests count patients, not rows: a deterioration model scores each inpatient every few
  hours, so a window's rows are far from independent (age is the same in all of one patient's
  rows). The engine passes each sample's share of independent rows (distinct patients over rows,
  ``independent_share``) and the p-values are computed on those effective sizes; the effect sizes
  are the rows' own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitalops.governance.criteria import PSI_FLOOR, psi_of_counts

#: Quantile bins of the reference for PSI and Jensen-Shannon (deciles).
DEFAULT_BINS = 10
#: A feature with at most this many distinct reference values is categorical (Evidently's cut).
CATEGORICAL_MAX_VALUES = 5
#: The normal distribution's IQR in standard deviations (2 * 0.6745): IQR / 1.349 estimates sigma.
IQR_PER_SIGMA = 1.349
#: Evidently's rule: at most this many reference rows use the p-value tests.
EVIDENTLY_SMALL_REFERENCE = 1000
EVIDENTLY_P = 0.05
EVIDENTLY_DISTANCE = 0.1
#: Our rule: significance and effect sizes.
VITALOPS_P = 0.01
VITALOPS_PSI = 0.2
VITALOPS_WASSERSTEIN = 0.1
VITALOPS_SHARE_CHANGE = 0.1

__all__ = [
    "DRIFT_RULES", "DEFAULT_BINS", "PSI_FLOOR", "Distribution", "Verdict", "chi_square", "evidently_rule",
    "jensen_shannon", "ks_2samp", "psi", "vitalops_rule", "wasserstein",
]


@dataclass(frozen=True)
class Distribution:
    """A feature's values as an aggregate: sorted distinct finite ``values``, their ``counts``, and
    how many rows had no value (``missing``)."""

    values: np.ndarray
    counts: np.ndarray
    missing: int = 0

    @classmethod
    def from_values(cls, values: Any) -> Distribution:
        """The aggregate of raw values (NaN or None is missing)."""
        array = np.asarray([np.nan if v is None else v for v in values] if isinstance(values, list) else values,
                           dtype=np.float64)
        finite = array[~np.isnan(array)]
        distinct, counts = np.unique(finite, return_counts=True)
        return cls(distinct, counts.astype(np.float64), int(array.shape[0] - finite.shape[0]))

    @classmethod
    def from_counts(cls, values: Any, counts: Any, missing: int = 0) -> Distribution:
        """The aggregate of ``(value, count)`` pairs in any order (a value may repeat: its counts add)."""
        v = np.asarray(values, dtype=np.float64)
        c = np.asarray(counts, dtype=np.float64)
        distinct, inverse = np.unique(v, return_inverse=True)
        return cls(distinct, np.bincount(inverse, weights=c, minlength=distinct.shape[0]), int(missing))

    @property
    def n(self) -> int:
        """Rows with a value."""
        return int(round(float(self.counts.sum())))

    @property
    def total(self) -> int:
        return self.n + self.missing

    @property
    def missing_rate(self) -> float:
        return self.missing / self.total if self.total else float("nan")

    def mean(self) -> float:
        return float(np.sum(self.values * self.counts) / self.counts.sum())

    def std(self) -> float:
        """Population standard deviation (``ddof=0``, as ``np.std``)."""
        mean = self.mean()
        return float(math.sqrt(np.sum(self.counts * (self.values - mean) ** 2) / self.counts.sum()))

    def quantiles(self, q: Any) -> np.ndarray:
        """``np.quantile`` of the rows this aggregate stands for (linear interpolation)."""
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        cumulative = np.cumsum(self.counts)
        position = (cumulative[-1] - 1) * qs
        low = np.floor(position)
        # the k-th order statistic (0-based) is the first value whose cumulative count exceeds k
        below = self.values[np.minimum(np.searchsorted(cumulative, low, side="right"), self.values.shape[0] - 1)]
        above = self.values[np.minimum(np.searchsorted(cumulative, low + 1, side="right"), self.values.shape[0] - 1)]
        result: np.ndarray = below + (position - low) * (above - below)
        return result

    def robust_scale(self) -> float:
        """IQR / 1.349: the standard deviation a normal distribution with this IQR would have."""
        q25, q75 = self.quantiles([0.25, 0.75])
        return float((q75 - q25) / IQR_PER_SIGMA)

    def histogram(self, edges: np.ndarray) -> np.ndarray:
        """Counts in the bins of ``edges`` (inner edges; outer bins open; an edge value goes up)."""
        bins = np.searchsorted(edges, self.values, side="right")
        return np.bincount(bins, weights=self.counts, minlength=edges.shape[0] + 1)

    def category_counts(self, categories: np.ndarray) -> np.ndarray:
        """Counts of each of ``categories`` (sorted), zero where absent."""
        counts = np.zeros(categories.shape[0])
        index = np.searchsorted(categories, self.values)
        inside = (index < categories.shape[0]) & (categories[np.minimum(index, categories.shape[0] - 1)]
                                                   == self.values)
        np.add.at(counts, index[inside], self.counts[inside])
        return counts

    def compressed(self, max_points: int) -> Distribution:
        """At most ``max_points`` values: the distribution itself when it is that small, else its
        quantiles at ``max_points`` equal steps, each carrying an equal share of the rows."""
        if self.values.shape[0] <= max_points:
            return self
        points = self.quantiles(np.linspace(0.0, 1.0, max_points))
        return Distribution.from_counts(points, np.full(max_points, self.n / max_points), self.missing)

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values.tolist(), "counts": self.counts.tolist(), "missing": self.missing}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Distribution:
        return cls(np.asarray(document["values"], dtype=np.float64),
                   np.asarray(document["counts"], dtype=np.float64), int(document["missing"]))


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """PSI of two histograms on the reference's bins, shares floored at 1e-4."""
    return psi_of_counts(reference_counts, current_counts)


#: Share of a sample's rows that are independent units: 1.0 treats every row as independent.
Independence = tuple[float, float]
ROWS_INDEPENDENT: Independence = (1.0, 1.0)


def ks_2samp(reference: Distribution, current: Distribution, *,
             independent: Independence = ROWS_INDEPENDENT) -> tuple[float, float]:
    """(statistic, asymptotic two-sided p-value) of the two-sample KS test, as
    ``scipy.stats.ks_2samp(method="asymp")`` computes them on the rows; the p-value on the
    effective sizes ``n * independent`` (rows of one patient are not independent: see
    ``independent_share``)."""
    from scipy.stats import kstwo

    n, m = reference.counts.sum(), current.counts.sum()
    if n == 0 or m == 0:
        return float("nan"), float("nan")
    support = np.union1d(reference.values, current.values)
    cdf_reference = _cdf_at(reference, support) / n
    cdf_current = _cdf_at(current, support) / m
    statistic = float(np.max(np.abs(cdf_reference - cdf_current)))
    n_eff, m_eff = n * independent[0], m * independent[1]
    pvalue = float(np.clip(kstwo.sf(statistic, max(1.0, np.round(n_eff * m_eff / (n_eff + m_eff)))), 0.0, 1.0))
    return statistic, pvalue


def independent_share(units: int | None, rows: int) -> float:
    """The share of ``rows`` that are independent: ``units`` (distinct patients) over rows, at most
    1; 1.0 when the units are unknown. A patient scored every few hours contributes many rows that
    say much the same; the tests count patients, so a window of 100 rows from 25 patients weighs as
    25 (a conservative design effect: rows of one patient are treated as one observation)."""
    if units is None or rows <= 0:
        return 1.0
    return float(min(1.0, max(units, 1) / rows))


def _cdf_at(distribution: Distribution, points: np.ndarray) -> np.ndarray:
    cumulative = np.concatenate([[0.0], np.cumsum(distribution.counts)])
    result: np.ndarray = cumulative[np.searchsorted(distribution.values, points, side="right")]
    return result


def wasserstein(reference: Distribution, current: Distribution) -> float:
    """W1 between the two value distributions (``scipy.stats.wasserstein_distance`` with weights)."""
    from scipy.stats import wasserstein_distance

    if reference.n == 0 or current.n == 0:
        return float("nan")
    return float(wasserstein_distance(reference.values, current.values, reference.counts, current.counts))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log) between two histograms on the same bins."""
    from scipy.spatial.distance import jensenshannon

    p = np.asarray(reference_counts, dtype=np.float64)
    q = np.asarray(current_counts, dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    return float(jensenshannon(p / p.sum(), q / q.sum()))


def chi_square(reference_counts: np.ndarray, current_counts: np.ndarray, *,
               independent: Independence = ROWS_INDEPENDENT) -> tuple[float, float]:
    """(statistic, p-value) of the chi-square test of homogeneity of the 2 x K table (categories
    absent from both samples dropped), as ``scipy.stats.chi2_contingency`` computes it, each row
    of counts scaled to its effective size (``independent``)."""
    from scipy.stats import chi2_contingency

    table = np.vstack([np.asarray(reference_counts, dtype=np.float64) * independent[0],
                       np.asarray(current_counts, dtype=np.float64) * independent[1]])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def two_proportion_z(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Two-sided p-value of the pooled two-proportion Z test on two categories (Evidently's test for
    a binary column with a small reference); z squared is the homogeneity chi-square without
    Yates' correction, which is how it is computed."""
    from scipy.stats import chi2_contingency

    table = np.vstack([reference_counts, current_counts]).astype(np.float64)
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)


def chi_square_goodness_of_fit(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Evidently's chi-square: current counts against the reference's shares scaled to the current
    size (``scipy.stats.chisquare``); it treats the reference as exact."""
    from scipy.stats import chisquare

    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    expected = ref * cur.sum() / ref.sum()
    keep = expected > 0
    if keep.sum() < 2:
        return 0.0, 1.0
    # categories new in the current window have no expected count: kept out (scipy needs f_exp > 0)
    observed, expected = cur[keep], expected[keep]
    expected = expected * observed.sum() / expected.sum()
    result = chisquare(observed, expected)
    return float(result.statistic), float(result.pvalue)


@dataclass(frozen=True)
class Verdict:
    """A rule's judgement of one feature: whether it drifted, by which test, with its value."""

    drift: bool
    rule: str
    test: str
    value: float | None
    threshold: float
    statistics: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"drift": self.drift, "rule": self.rule, "test": self.test, "value": _finite(self.value),
                "threshold": self.threshold, **{k: _finite(v) for k, v in self.statistics.items()}}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def is_categorical(reference: Distribution) -> bool:
    """A feature with at most CATEGORICAL_MAX_VALUES distinct reference values is judged per category."""
    return int(reference.values.shape[0]) <= CATEGORICAL_MAX_VALUES


def evidently_rule(reference: Distribution, current: Distribution, *, edges: np.ndarray | None = None) -> Verdict:
    """Evidently 0.7's default data-drift rule for one column (see the module docstring)."""
    categorical = is_categorical(reference)
    if reference.n <= EVIDENTLY_SMALL_REFERENCE:
        if categorical:
            categories = np.union1d(reference.values, current.values)
            ref_counts, cur_counts = reference.category_counts(categories), current.category_counts(categories)
            if categories.shape[0] == 2:  # two categories: the pooled two-proportion Z test
                p = two_proportion_z(ref_counts, cur_counts)
                return Verdict(p < EVIDENTLY_P, "evidently", "z", p, EVIDENTLY_P)
            _, p = chi_square_goodness_of_fit(ref_counts, cur_counts)
            return Verdict(p < EVIDENTLY_P, "evidently", "chisquare", p, EVIDENTLY_P)
        _, p = ks_2samp(reference, current)
        return Verdict(p < EVIDENTLY_P, "evidently", "ks", p, EVIDENTLY_P)
    if categorical:
        categories = np.union1d(reference.values, current.values)
        # the raw shares, an empty category at zero, as Evidently 0.7 bins them (no floor, unlike its PSI)
        distance = jensen_shannon(reference.category_counts(categories), current.category_counts(categories))
        return Verdict(distance >= EVIDENTLY_DISTANCE, "evidently", "jensenshannon", distance, EVIDENTLY_DISTANCE)
    distance = wasserstein(reference, current) / reference.std()
    return Verdict(distance >= EVIDENTLY_DISTANCE, "evidently", "wasserstein_normed", distance, EVIDENTLY_DISTANCE)


def vitalops_rule(reference: Distribution, current: Distribution, *, edges: np.ndarray | None = None,
                  independent: Independence = ROWS_INDEPENDENT) -> Verdict:
    """Our default: an effect size at or over its threshold and a significant test (module docstring).

    ``edges`` are the reference's stored quantile bin edges (deciles of the reference when None);
    ``independent`` the share of each sample's rows that are independent (``independent_share``),
    which the tests' p-values use and the effect sizes do not.
    """
    if is_categorical(reference):
        categories = np.union1d(reference.values, current.values)
        ref_counts, cur_counts = reference.category_counts(categories), current.category_counts(categories)
        _, p = chi_square(ref_counts, cur_counts, independent=independent)
        index = psi(ref_counts, cur_counts)
        shift = float(np.max(np.abs(ref_counts / reference.n - cur_counts / max(current.n, 1))))
        drift = p < VITALOPS_P and (index >= VITALOPS_PSI or shift >= VITALOPS_SHARE_CHANGE)
        return Verdict(drift, "vitalops", "chi2_contingency", index, VITALOPS_PSI,
                       {"psi": index, "chi2_pvalue": p, "max_share_change": shift})
    if edges is None:
        edges = np.unique(reference.quantiles(np.linspace(0.0, 1.0, DEFAULT_BINS + 1))[1:-1])
    index = psi(reference.histogram(edges), current.histogram(edges))
    statistic, p = ks_2samp(reference, current, independent=independent)
    distance = wasserstein(reference, current)
    scale = reference.robust_scale()
    robust = distance / scale if scale > 0 else distance / reference.std()
    drift = p < VITALOPS_P and (index >= VITALOPS_PSI or robust >= VITALOPS_WASSERSTEIN)
    return Verdict(drift, "vitalops", "ks", index, VITALOPS_PSI,
                   {"psi": index, "ks_statistic": statistic, "ks_pvalue": p, "wasserstein_robust": robust,
                    "wasserstein_normed": distance / reference.std()})


DriftRule = Callable[..., Verdict]
#: The named rules an operator can choose; ``vitalops`` is the default.
DRIFT_RULES: dict[str, DriftRule] = {"vitalops": vitalops_rule, "evidently": evidently_rule}
