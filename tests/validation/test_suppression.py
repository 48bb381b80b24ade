from __future__ import annotations

import numpy as np
import pytest

from vitalops.validation.fairness import subgroup_metrics
from vitalops.validation.suppression import suppress_cells

MINIMUM = 20


@pytest.mark.parametrize("seed", range(300))
def test_no_suppressed_count_follows_from_the_total(seed: int) -> None:
    """For random group sizes and positives, every hidden cell of a column is hidden together with
    at least one other, so the total minus the shown cells is a sum of two or more unknowns; every
    size under the threshold, every positives or negatives under it, is hidden."""
    rng = np.random.default_rng(seed)
    groups = [f"g{index}" for index in range(int(rng.integers(2, 7)))]
    sizes = {group: int(rng.choice([rng.integers(1, 25), rng.integers(20, 3000)])) for group in groups}
    positives = {group: int(rng.binomial(size, rng.uniform(0.01, 0.99))) for group, size in sizes.items()}
    hidden = suppress_cells(sizes, positives, MINIMUM)
    for column, values, flag in (
        ("size", sizes, lambda cell: cell.size),
        ("positives", positives, lambda cell: cell.positives),
    ):
        suppressed = {group for group in groups if flag(hidden[group])}
        assert len(suppressed) != 1, (column, sizes, positives)
        total = sum(values.values())
        remainder = total - sum(values[group] for group in groups if group not in suppressed)
        # The remainder is the sum of the hidden cells; it names none of them alone.
        assert remainder == sum(values[group] for group in suppressed)
    for group in groups:
        cell = hidden[group]
        if sizes[group] < MINIMUM:
            assert cell.size and cell.positives
        if positives[group] < MINIMUM or sizes[group] - positives[group] < MINIMUM:
            assert cell.positives
        if cell.size:
            assert cell.positives


def test_report_tables_hide_the_complement_and_every_metric_of_a_hidden_group() -> None:
    """Three sites, one with 12 rows: its size is hidden, and so is the next-smallest site's, so
    the total (shown in the report) minus the shown site does not give either; neither shows positives
    or metrics, and the numbers themselves appear nowhere in their records."""
    rng = np.random.default_rng(8)
    site = np.asarray(["north"] * 900 + ["south"] * 300 + ["east"] * 12, dtype=object)
    y = rng.binomial(1, 0.3, site.shape[0])
    score = np.clip(rng.normal(0.3 + 0.3 * y, 0.15), 0.0, 1.0)
    results = {r.group: r for r in subgroup_metrics(y, score, 0.5, {"site": site}, n_resamples=30, seed=1)}
    east, south, north = results["east"], results["south"], results["north"]
    assert not north.suppressed and north.n == 900 and north.metrics is not None
    for hidden in (east, south):
        assert hidden.suppressed and hidden.n is None and hidden.positives is None
        assert hidden.metrics is None and hidden.ratios is None
    assert east.count_display == "<20" and south.count_display == "suppressed"
    assert "300" not in south.model_dump_json() and "12" not in east.model_dump_json()
    shown = sum(r.n or 0 for r in results.values())
    assert site.shape[0] - shown == 312  # the sum of two hidden cells, neither alone


def test_few_positives_hide_the_positives_their_complement_and_the_metrics() -> None:
    rng = np.random.default_rng(9)
    sex = np.asarray(["female"] * 600 + ["male"] * 500 + ["unknown"] * 200, dtype=object)
    y = np.concatenate([rng.binomial(1, 0.3, 1100), np.r_[np.ones(5), np.zeros(195)]]).astype(int)
    score = np.clip(rng.normal(0.3 + 0.3 * y, 0.15), 0.0, 1.0)
    results = {r.group: r for r in subgroup_metrics(y, score, 0.5, {"sex": sex}, n_resamples=30, seed=1)}
    unknown = results["unknown"]
    assert unknown.n == 200 and unknown.positives is None and unknown.metrics is None
    hidden_positives = [r for r in results.values() if r.positives is None]
    assert len(hidden_positives) == 2
    assert all(r.metrics is None and r.ratios is None for r in hidden_positives)
