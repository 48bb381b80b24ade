from __future__ import annotations

import numpy as np

from vitalops.governance.criteria import ratios
from vitalops.governance.pccp import RatioBounds


def test_groups_that_cannot_be_judged_are_not_evaluable_rather_than_passed() -> None:
    rng = np.random.default_rng(3)
    groups = np.array(["a"] * 400 + ["b"] * 200 + ["c"] * 10, dtype=object)
    labels = np.concatenate([rng.integers(0, 2, 400), np.zeros(200, dtype=int), rng.integers(0, 2, 10)])
    scores = rng.random(labels.shape[0])
    bounds = RatioBounds(metric="auroc", ratio_min=0.8, ratio_max=1.25, small_group_min=30)
    by_name = {c.name: c for c in ratios("site", groups, labels, scores, 0.5, bounds, reference=None)}
    one_class, small = by_name["site=b.auroc_ratio"], by_name["site=c.auroc_ratio"]
    assert not one_class.evaluable and one_class.passed and "one outcome class" in one_class.note
    assert not small.evaluable and small.bound == "suppressed"
