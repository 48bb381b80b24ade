"""Our drift statistics against Evidently 0.7.23's own stattest functions, run in Evidently's pinned
environment (bench/_evidently.py, built on first use and cached under ~/.cache): equal where the
test is the same, and each known difference asserted as what it is.

Evidently cannot be imported beside pandas 3, so every case goes to its worker in one call; the
environment not building is a failure here, not a skip.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from vitalops.monitoring.stats import (
    EVIDENTLY_DISTANCE,
    EVIDENTLY_P,
    PSI_FLOOR,
    Distribution,
    chi_square,
    chi_square_goodness_of_fit,
    evidently_rule,
    psi,
    vitalops_rule,
)

BENCH = Path(__file__).resolve().parents[2] / "bench"
#: A cold environment is a pip install of Evidently and pandas (about 75-90 s here, more on a slow mirror).
pytestmark = pytest.mark.timeout(900)

def _same(expected: float) -> Any:
    """Equal but for rounding: both sides evaluate the same float64 formula, ours over distinct values
    with counts and Evidently's over rows, so they differ only by the order of the sums."""
    return pytest.approx(expected, rel=1e-9, abs=1e-12)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _categories(seed: int, shares: list[float], size: int, first: float = 1.0) -> np.ndarray:
    p = np.asarray(shares)
    return _rng(seed).choice(p.shape[0], size=size, p=p / p.sum()).astype(np.float64) + first


def _heart_rate(seed: int, size: int, shift: float = 0.0) -> np.ndarray:
    return np.round(_rng(seed).normal(85.0 + shift, 15.0, size))


TRIAGE = [0.05, 0.25, 0.45, 0.20, 0.05]
TRIAGE_MOVED = [0.10, 0.38, 0.35, 0.13, 0.04]

#: name: (reference, current, feature type as declared to Evidently). Reference over 1,000 rows:
#: Evidently's default is normed Wasserstein (numeric) or Jensen-Shannon (categorical); 1,000 or
#: fewer: KS, chi-square, or a Z test for two categories.
CASES: dict[str, tuple[np.ndarray, np.ndarray, str]] = {
    "numeric_same": (_heart_rate(1, 4000), _heart_rate(2, 3000), "num"),
    "numeric_shifted": (_heart_rate(1, 4000), _heart_rate(3, 3000, shift=4.5), "num"),
    "lab_same": (np.round(_rng(4).lognormal(0.0, 0.3, 4000), 2), np.round(_rng(5).lognormal(0.0, 0.3, 2500), 2),
                 "num"),
    "triage_same": (_categories(6, TRIAGE, 4000), _categories(7, TRIAGE, 3000), "cat"),
    "triage_moved": (_categories(6, TRIAGE, 4000), _categories(8, TRIAGE_MOVED, 3000), "cat"),
    "binary_same": (_categories(9, [0.8, 0.2], 4000, 0.0), _categories(10, [0.8, 0.2], 3000, 0.0), "cat"),
    "binary_moved": (_categories(9, [0.8, 0.2], 4000, 0.0), _categories(11, [0.62, 0.38], 3000, 0.0), "cat"),
    # a category absent from the current data (ESI 1 and 5 never charted on a night shift)
    "triage_empty": (_categories(6, TRIAGE, 4000), _categories(12, [0.0, 0.3, 0.5, 0.2, 0.0], 3000), "cat"),
    # small references: Evidently's p-value tests
    "small_numeric_same": (_heart_rate(13, 800), _heart_rate(14, 900), "num"),
    "small_numeric_shifted": (_heart_rate(13, 800), _heart_rate(15, 900, shift=3.0), "num"),
    "small_numeric_large_current_same": (_heart_rate(16, 1000), _heart_rate(17, 12_000), "num"),
    "small_numeric_large_current_shifted": (_heart_rate(16, 1000), _heart_rate(18, 12_000, shift=2.0), "num"),
    "small_triage_same": (_categories(19, TRIAGE, 800), _categories(20, TRIAGE, 700), "cat"),
    "small_triage_moved": (_categories(19, TRIAGE, 800), _categories(21, TRIAGE_MOVED, 700), "cat"),
    "small_binary_same": (_categories(22, [0.8, 0.2], 800, 0.0), _categories(23, [0.8, 0.2], 700, 0.0), "cat"),
    "small_binary_moved": (_categories(22, [0.8, 0.2], 800, 0.0), _categories(24, [0.7, 0.3], 700, 0.0), "cat"),
    # the test choice: ours from the reference's distinct count, Evidently's from the declared
    # type and the distinct count of both samples together
    "five_values_and_a_new_one": (_categories(25, [0.2] * 5, 4000, 0.0),
                                  np.append(_categories(26, [0.2] * 5, 2990, 0.0), [5.0] * 10), "num"),
    "seven_categories": (_categories(27, [1 / 7] * 7, 4000), _categories(28, [1 / 7] * 7, 3000), "cat"),
}
#: The stattests asked of Evidently by name, beside its default ("auto") on every case.
NAMED = {"numeric_same": ["wasserstein", "psi"], "numeric_shifted": ["wasserstein", "psi"],
         "triage_same": ["jensenshannon", "psi"], "triage_moved": ["jensenshannon", "psi"],
         "binary_moved": ["jensenshannon", "psi"], "triage_empty": ["jensenshannon"],
         "small_numeric_same": ["ks"], "small_numeric_shifted": ["ks"], "small_triage_moved": ["chisquare"],
         "small_binary_moved": ["z", "chisquare"]}


def _load_evidently() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vitalops_bench_evidently", BENCH / "_evidently.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Answers = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture(scope="module")
def evidently() -> Answers:
    """Evidently's answer per (case, test): its default test on every case and the named ones."""
    asked = [(name, "auto") for name in CASES] + [(name, test) for name, tests in NAMED.items() for test in tests]
    request = {"mode": "stattests", "cases": [
        {"test": test, "reference": CASES[name][0].tolist(), "current": CASES[name][1].tolist(),
         "feature_type": CASES[name][2]} for name, test in asked]}
    answers = _load_evidently().worker(request)["answers"]  # EvidentlyUnavailable fails the tests
    assert len(answers) == len(asked)
    return dict(zip(asked, answers, strict=True))


def _ours(name: str) -> tuple[Distribution, Distribution]:
    reference, current, _ = CASES[name]
    return Distribution.from_values(reference), Distribution.from_values(current)


def test_evidentlys_default_test_and_decision_are_our_rules_where_the_test_is_the_same(evidently: Answers) -> None:
    # our names for Evidently's tests
    twins = {"wasserstein_normed": "wasserstein", "jensenshannon": "jensenshannon", "ks": "ks",
             "chisquare": "chisquare", "z": "z"}
    same_test = [name for name in CASES if not name.startswith(("five_values", "seven_categories"))]
    for name in same_test:
        verdict, theirs = evidently_rule(*_ours(name)), evidently[(name, "auto")]
        assert twins[verdict.test] == theirs["test"], name
        assert verdict.drift == theirs["drift"], name
    # the cases decide something: both flag every moved or shifted column, and one that is noise:
    # the goodness-of-fit chi-square treats the 800-row reference as exact, so triage shares drawn
    # from the same population get p = 0.002 (our own rule's homogeneity test: p = 0.13, no drift)
    flagged = {name for name in same_test if evidently[(name, "auto")]["drift"]}
    assert flagged == {"numeric_shifted", "triage_moved", "binary_moved", "small_binary_moved", "small_numeric_shifted",
                       "small_numeric_large_current_shifted", "small_triage_moved", "triage_empty",
                       "small_triage_same"}
    assert not vitalops_rule(*_ours("small_triage_same")).drift


@pytest.mark.parametrize("name", ["numeric_same", "numeric_shifted", "lab_same"])
def test_normed_wasserstein_is_evidentlys(evidently: Answers, name: str) -> None:
    verdict = evidently_rule(*_ours(name))
    assert verdict.test == "wasserstein_normed" and verdict.threshold == EVIDENTLY_DISTANCE
    assert verdict.value == _same(evidently[(name, "auto")]["value"])
    if name in NAMED:
        assert evidently[(name, "wasserstein")]["value"] == evidently[(name, "auto")]["value"]


@pytest.mark.parametrize("name", ["triage_same", "triage_moved", "binary_same", "binary_moved"])
def test_jensen_shannon_is_evidentlys_when_no_category_is_empty(evidently: Answers, name: str) -> None:
    verdict = evidently_rule(*_ours(name))
    assert verdict.test == "jensenshannon"
    assert verdict.value == _same(evidently[(name, "auto")]["value"])


def test_jensen_shannon_is_evidentlys_when_a_category_is_empty(evidently: Answers) -> None:
    reference, current = _ours("triage_empty")
    categories = np.union1d(reference.values, current.values)
    p = reference.category_counts(categories) / reference.n
    q = current.category_counts(categories) / current.n
    assert (q == 0).sum() == 2 and (p > 0).all()
    theirs = evidently[("triage_empty", "jensenshannon")]["value"]
    # Evidently: the raw shares, an empty category at zero; so are ours (no floor, unlike PSI)
    assert theirs == _same(jensenshannon(p, q))
    assert evidently_rule(reference, current).value == _same(theirs)
    # the floor PSI uses would have moved it by a small, measurable amount
    floored = float(jensenshannon(np.maximum(p, PSI_FLOOR), np.maximum(q, PSI_FLOOR)))
    assert 1e-4 < theirs - floored < 1e-2


def test_ks_p_value_is_evidentlys_when_scipy_picks_the_asymptotic_method(evidently: Answers) -> None:
    # Evidently calls ks_2samp with method "auto": asymptotic once a sample has over 10,000 rows,
    # the method ours always uses
    for name in ("small_numeric_large_current_same", "small_numeric_large_current_shifted"):
        verdict, theirs = evidently_rule(*_ours(name)), evidently[(name, "auto")]
        assert verdict.test == "ks" and theirs["test"] == "ks"
        assert verdict.value == _same(theirs["value"])
    assert evidently[("small_numeric_large_current_shifted", "auto")]["value"] < 0.01


def test_ks_p_value_is_exact_in_evidently_and_asymptotic_in_ours_at_small_sizes(evidently: Answers) -> None:
    for name in ("small_numeric_same", "small_numeric_shifted"):
        reference, current, _ = CASES[name]
        theirs = evidently[(name, "ks")]["value"]
        assert theirs == evidently[(name, "auto")]["value"]
        assert theirs == _same(sps.ks_2samp(reference, current, method="exact").pvalue)
        ours = evidently_rule(*_ours(name)).value
        assert ours == _same(sps.ks_2samp(reference, current, method="asymp").pvalue)
        # different methods, different numbers (by about 0.1-0.3% here, far above rounding), the same decision
        assert ours is not None and abs(ours - theirs) > 5e-4 * theirs
        assert (ours < EVIDENTLY_P) == (theirs <= EVIDENTLY_P)


@pytest.mark.parametrize("name", ["small_triage_same", "small_triage_moved"])
def test_chi_square_p_value_is_evidentlys_goodness_of_fit(evidently: Answers, name: str) -> None:
    reference, current = _ours(name)
    verdict = evidently_rule(reference, current)
    assert verdict.test == "chisquare" and evidently[(name, "auto")]["test"] == "chisquare"
    assert verdict.value == _same(evidently[(name, "auto")]["value"])
    if name in NAMED:
        assert evidently[(name, "chisquare")]["value"] == _same(verdict.value)
    # our own rule's test of homogeneity treats the reference as a sample too: a larger p-value
    categories = np.union1d(reference.values, current.values)
    _, homogeneity = chi_square(reference.category_counts(categories), current.category_counts(categories))
    assert homogeneity > verdict.value


def test_two_categories_take_evidentlys_z_test(evidently: Answers) -> None:
    reference, current = _ours("small_binary_moved")
    verdict, theirs = evidently_rule(reference, current), evidently[("small_binary_moved", "auto")]
    assert theirs["test"] == "z" and verdict.test == "z"
    table = np.vstack([reference.category_counts(np.array([0.0, 1.0])), current.category_counts(np.array([0.0, 1.0]))])
    # the pooled two-proportion Z test is the homogeneity chi-square without Yates' correction (z^2 = X^2)
    assert theirs["value"] == pytest.approx(sps.chi2_contingency(table, correction=False).pvalue, rel=1e-7)
    assert verdict.value == pytest.approx(theirs["value"], rel=1e-7)
    assert verdict.value < 0.05 and verdict.drift == theirs["drift"]
    # the goodness of fit (Evidently's chi-square by name) would overstate significance here
    assert chi_square_goodness_of_fit(table[0], table[1])[1] < verdict.value
    # two samples of one population (20% with the flag): neither the Z test nor ours flags them
    same, theirs_same = evidently_rule(*_ours("small_binary_same")), evidently[("small_binary_same", "auto")]
    assert theirs_same["test"] == "z" and not theirs_same["drift"] and theirs_same["value"] > EVIDENTLY_P
    assert same.test == "z" and not same.drift and same.value == pytest.approx(theirs_same["value"], rel=1e-7)


def test_test_choice_differs_where_the_reference_and_the_declared_type_disagree(evidently: Answers) -> None:
    # five distinct values in the reference, a sixth in the current data, declared numeric: ours is
    # categorical (Jensen-Shannon), Evidently counts six values in both together (normed Wasserstein)
    assert evidently_rule(*_ours("five_values_and_a_new_one")).test == "jensenshannon"
    assert evidently[("five_values_and_a_new_one", "auto")]["test"] == "wasserstein"
    # seven levels declared categorical: Evidently judges per category, ours as a number
    assert evidently_rule(*_ours("seven_categories")).test == "wasserstein_normed"
    assert evidently[("seven_categories", "auto")]["test"] == "jensenshannon"


@pytest.mark.parametrize("name", ["triage_same", "triage_moved", "binary_moved"])
def test_psi_over_categories_is_evidentlys(evidently: Answers, name: str) -> None:
    reference, current = _ours(name)
    ours = vitalops_rule(reference, current).statistics["psi"]
    assert ours == _same(evidently[(name, "psi")]["value"])


@pytest.mark.parametrize("name", ["numeric_same", "numeric_shifted"])
def test_numeric_psi_differs_from_evidentlys_only_by_its_bins(evidently: Answers, name: str) -> None:
    reference, current, _ = CASES[name]
    ref, cur = _ours(name)
    theirs = evidently[(name, "psi")]["value"]
    # Evidently: equal-width Sturges bins over both samples together; ours: the reference's deciles
    sturges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")[1:-1]
    assert psi(ref.histogram(sturges), cur.histogram(sturges)) == _same(theirs)
    ours = vitalops_rule(ref, cur).statistics["psi"]
    assert ours is not None and abs(ours - theirs) > 1e-4
