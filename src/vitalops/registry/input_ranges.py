"""The range of each input a version was trained on, and how far beyond it a served value may lie.

Training records, per feature, the smallest and largest value among its training rows (missing
values aside) in the version's lineage as ``input_ranges``: ``{feature: [low, high]}``, or ``None``
for a feature never observed. Serving holds every value against it:

* inside ``[low, high]``: scored as usual;
* outside it but within the tolerance (``tolerance`` times the range's width beyond either end,
  the change-control plan's ``inputs.range_tolerance``): scored, and the prediction names the
  feature in ``out_of_range`` (the review queue takes it: the model extrapolates there);
* beyond the tolerance: refused (InvalidInput naming the feature), never scored or logged.

A feature whose training values were all equal has a width of zero, so only that value passes
without a flag and any other value lies beyond tolerance when ``tolerance`` times zero is zero; a
width of zero is therefore widened to ``abs(value)`` (or 1 when the value is 0) for the tolerance.
Versions registered before ranges were recorded carry none and are not checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vitalops.errors import InvalidInput

#: The plan's default: a value may lie a quarter of the training range's width beyond either end.
DEFAULT_TOLERANCE = 0.25


def observed_ranges(features: np.ndarray, names: Sequence[str]) -> dict[str, list[float] | None]:
    """``{feature: [min, max]}`` over the rows of ``features`` (NaN ignored; None when all are NaN)."""
    ranges: dict[str, list[float] | None] = {}
    for index, name in enumerate(names):
        column = features[:, index]
        known = column[~np.isnan(column)]
        ranges[name] = None if known.size == 0 else [float(known.min()), float(known.max())]
    return ranges


@dataclass(frozen=True)
class InputRanges:
    """The training range of each input of one version, aligned with its feature order."""

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def from_lineage(cls, lineage: Mapping[str, Any], names: Sequence[str]) -> InputRanges | None:
        """The ranges a version's lineage records, or None when it records none."""
        recorded = lineage.get("input_ranges")
        if not isinstance(recorded, dict):
            return None
        low = np.full(len(names), -np.inf)
        high = np.full(len(names), np.inf)
        for index, name in enumerate(names):
            bounds = recorded.get(name)
            if bounds is not None:
                low[index], high[index] = float(bounds[0]), float(bounds[1])
        return cls(tuple(names), low, high)

    def outside(self, row: np.ndarray) -> list[str]:
        """The features of ``row`` outside their training range (missing values are not outside)."""
        with np.errstate(invalid="ignore"):
            mask = (row < self.low) | (row > self.high)
        return [self.names[i] for i in np.flatnonzero(mask)]

    def check(self, row: np.ndarray, tolerance: float, *, what: str) -> list[str]:
        """The features of ``row`` outside their training range; InvalidInput naming the first one
        that lies beyond ``tolerance`` of the range's width (``what`` names the version)."""
        outside = self.outside(row)
        if not outside:
            return []
        for name in outside:
            index = self.names.index(name)
            low, high, value = self.low[index], self.high[index], row[index]
            width = high - low
            if width == 0:
                width = abs(low) or 1.0
            if value < low - tolerance * width or value > high + tolerance * width:
                raise InvalidInput(
                    # Neither the value nor the range's ends: each end is one training patient's value.
                    f"'{name}' lies outside the range {what} was trained on by more than its change-control "
                    f"plan allows ({tolerance:g} of the range's width)",
                    details={"field": f"features.{name}", "reason": "outside_training_range"},
                )
        return outside
