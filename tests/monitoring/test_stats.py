"""The drift statistics on aggregates agree with scipy on the rows; the two rules on shifts that matter
and on noise that does not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from vitalops.governance.criteria import population_stability, quantile_bin_edges
from vitalops.monitoring.stats import (
    Distribution,
    chi_square,
    chi_square_goodness_of_fit,
    evidently_rule,
    jensen_shannon,
    ks_2samp,
    psi,
    vitalops_rule,
    wasserstein,
)


def _samples(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # rounded, as lab values are: many ties, which the exact KS and W must handle
    reference = np.round(rng.lognormal(0.0, 0.4, 3000), 2)
    current = np.round(rng.lognormal(0.1, 0.5, 1700), 2)
    return reference, current


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_agrees_with_scipy_on_the_rows(seed):
    reference, current = _samples(seed)
    statistic, pvalue = ks_2samp(Distribution.from_values(reference), Distribution.from_values(current))
    expected = sps.ks_2samp(reference, current, method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    # continuous values, no ties
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=500), rng.normal(0.2, 1.0, size=800)
    statistic, pvalue = ks_2samp(Distribution.from_values(a), Distribution.from_values(b))
    expected = sps.ks_2samp(a, b, method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_wasserstein_and_its_normed_form_agree_with_scipy(seed):
    reference, current = _samples(seed)
    ref, cur = Distribution.from_values(reference), Distribution.from_values(current)
    assert wasserstein(ref, cur) == pytest.approx(sps.wasserstein_distance(reference, current), rel=1e-10)
    # Evidently's normalization: divided by the reference's standard deviation (ddof 0)
    assert ref.std() == pytest.approx(np.std(reference), rel=1e-12)
    assert wasserstein(ref, cur) / ref.std() == pytest.approx(
        sps.wasserstein_distance(reference, current) / np.std(reference), rel=1e-10)


def test_quantiles_of_an_aggregate_are_numpys_of_the_rows():
    reference, _ = _samples(3)
    ref = Distribution.from_values(reference)
    qs = np.linspace(0, 1, 11)
    assert np.allclose(ref.quantiles(qs), np.quantile(reference, qs), rtol=0, atol=1e-12)
    iqr = np.subtract(*np.percentile(reference, [75, 25]))
    assert ref.robust_scale() == pytest.approx(iqr / 1.349, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_psi_on_reference_deciles_is_the_pccp_gates_psi(seed):
    reference, current = _samples(seed)
    edges = quantile_bin_edges(reference, 10)
    ref, cur = Distribution.from_values(reference), Distribution.from_values(current)
    assert psi(ref.histogram(edges), cur.histogram(edges)) == pytest.approx(
        population_stability(reference, current, 10), rel=1e-12)
    # an empty bin is floored at 1e-4, so PSI stays finite
    shifted = Distribution.from_values(reference + 100.0)
    assert np.isfinite(psi(ref.histogram(edges), shifted.histogram(edges)))


def test_jensen_shannon_agrees_with_scipy():
    reference, current = _samples(4)
    edges = quantile_bin_edges(reference, 10)
    p = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.shape[0] + 1)
    q = np.bincount(np.searchsorted(edges, current, side="right"), minlength=edges.shape[0] + 1)
    ref, cur = Distribution.from_values(reference), Distribution.from_values(current)
    assert jensen_shannon(ref.histogram(edges), cur.histogram(edges)) == pytest.approx(
        jensenshannon(p / p.sum(), q / q.sum()), rel=1e-12)


def test_chi_square_agrees_with_scipy_contingency_and_goodness_of_fit():
    rng = np.random.default_rng(5)
    reference = rng.choice([0.0, 1.0, 2.0], p=[0.6, 0.3, 0.1], size=2000)
    current = rng.choice([0.0, 1.0, 2.0], p=[0.5, 0.35, 0.15], size=700)
    ref, cur = Distribution.from_values(reference), Distribution.from_values(current)
    categories = np.array([0.0, 1.0, 2.0])
    table = np.array([[np.sum(reference == c) for c in categories], [np.sum(current == c) for c in categories]])
    statistic, pvalue = chi_square(ref.category_counts(categories), cur.category_counts(categories))
    expected = sps.chi2_contingency(table)
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9)
    # binary (one degree of freedom): scipy's Yates correction applies to both
    binary = np.array([[1200, 800], [300, 400]])
    assert chi_square(binary[0], binary[1])[1] == pytest.approx(sps.chi2_contingency(binary).pvalue, rel=1e-9)
    _, gof = chi_square_goodness_of_fit(table[0], table[1])
    assert gof == pytest.approx(sps.chisquare(table[1], table[0] * table[1].sum() / table[0].sum()).pvalue,
                                rel=1e-9)


def test_a_distribution_survives_its_json_form_and_compression_keeps_the_ks_close():
    rng = np.random.default_rng(6)
    reference = rng.normal(size=50_000)
    ref = Distribution.from_values(np.append(reference, [np.nan] * 10))
    assert ref.missing == 10 and ref.n == 50_000
    again = Distribution.from_dict(ref.to_dict())
    assert np.array_equal(again.values, ref.values) and again.missing == 10
    small = ref.compressed(2000)
    assert small.values.shape[0] == 2000 and small.n == 50_000
    current = Distribution.from_values(rng.normal(0.1, 1.0, size=3000))
    assert abs(ks_2samp(small, current)[0] - ks_2samp(ref, current)[0]) <= 1 / 2000 + 1e-9


def _creatinine_mg_dl(rng: np.random.Generator, n: int) -> np.ndarray:
    """Hospital creatinine: a log-normal bulk around 1 mg/dL and 3% of patients on dialysis (4-12)."""
    bulk = rng.lognormal(0.0, 0.3, n)
    dialysis = rng.random(n) < 0.03
    return np.round(np.where(dialysis, rng.uniform(4.0, 12.0, n), bulk), 2)


def test_a_bulk_creatinine_offset_that_evidently_misses_at_large_n_is_caught_by_ours():
    rng = np.random.default_rng(7)
    reference = Distribution.from_values(_creatinine_mg_dl(rng, 20_000))
    # one of three sites' analyzers reads 0.3 mg/dL high (the KDIGO rise that defines acute kidney
    # injury): a third of patients look as if their kidneys were failing
    values = _creatinine_mg_dl(rng, 5000)
    offset = rng.random(5000) < 0.3
    current = Distribution.from_values(values + 0.3 * offset)
    evidently = evidently_rule(reference, current)
    ours = vitalops_rule(reference, current)
    assert evidently.test == "wasserstein_normed" and not evidently.drift  # the dialysis tail inflates the std
    assert evidently.value is not None and evidently.value < 0.1
    assert ours.drift
    assert ours.statistics["ks_pvalue"] < 1e-20 and ours.statistics["wasserstein_robust"] >= 0.1


def test_creatinine_sent_in_umol_per_litre_under_mg_per_dl_is_caught_by_both():
    rng = np.random.default_rng(8)
    reference = Distribution.from_values(_creatinine_mg_dl(rng, 20_000))
    values = _creatinine_mg_dl(rng, 2000)
    mislabelled = rng.random(2000) < 0.3
    current = Distribution.from_values(np.where(mislabelled, values * 88.42, values))
    assert vitalops_rule(reference, current).drift
    assert evidently_rule(reference, current).drift


def test_small_windows_of_pure_noise_are_flagged_by_evidently_at_large_n_and_rarely_by_ours():
    rng = np.random.default_rng(9)
    reference = Distribution.from_values(rng.normal(size=5000))
    windows = [Distribution.from_values(rng.normal(size=40)) for _ in range(100)]  # a quiet night: 40 patients
    evidently = sum(evidently_rule(reference, window).drift for window in windows)
    ours = sum(vitalops_rule(reference, window).drift for window in windows)
    assert evidently >= 80  # no significance test above 1,000 reference rows
    assert ours <= 5


def test_evidentlys_small_reference_rule_uses_ks_chi_square_and_the_z_test():
    rng = np.random.default_rng(10)
    reference = Distribution.from_values(rng.normal(size=800))
    shifted = Distribution.from_values(rng.normal(0.3, 1.0, size=800))
    verdict = evidently_rule(reference, shifted)
    assert verdict.test == "ks" and verdict.drift
    categorical = Distribution.from_values(rng.choice([0.0, 1.0], p=[0.7, 0.3], size=800))
    same = Distribution.from_values(rng.choice([0.0, 1.0], p=[0.7, 0.3], size=800))
    verdict = evidently_rule(categorical, same)
    assert verdict.test == "z" and not verdict.drift  # two categories: the two-proportion Z test
    triage = Distribution.from_values(rng.choice([1.0, 2.0, 3.0, 4.0], size=800))
    verdict = evidently_rule(triage, Distribution.from_values(rng.choice([1.0, 2.0, 3.0, 4.0], size=800)))
    assert verdict.test == "chisquare"


def test_our_rule_on_a_binary_feature_needs_significance_and_a_share_change():
    rng = np.random.default_rng(11)
    reference = Distribution.from_values(rng.choice([0.0, 1.0], p=[0.8, 0.2], size=10_000))
    moved = Distribution.from_values(rng.choice([0.0, 1.0], p=[0.65, 0.35], size=3000))
    same = Distribution.from_values(rng.choice([0.0, 1.0], p=[0.8, 0.2], size=3000))
    assert vitalops_rule(reference, moved).drift and vitalops_rule(reference, moved).test == "chi2_contingency"
    assert not vitalops_rule(reference, same).drift
