"""Small-cell suppression that cannot be undone by subtraction: the one rule for every table of
group counts (validation reports, model cards and the API, which all show the stored report).

Within one attribute (sex, age band, race, ethnicity, site...) the groups' sizes add up to the
cohort's size, and their positives to its positives, both of which are shown. Hiding one small
cell of a column therefore hides nothing: it is the total minus the shown cells. So, per column:

1. a group's size is suppressed when it is below the threshold;
2. if exactly one size of the attribute is suppressed, the next-smallest size is suppressed too;
3. a group's positives are suppressed when its size is, or when its positives or its negatives
   (size minus positives, which follows from a shown size) are below the threshold;
4. if exactly one positives cell of the attribute is suppressed, the next-smallest positives
   cell is suppressed too.

Two or more hidden cells of a column only reveal their sum. A group with any hidden cell shows
no metric and no ratio either (prevalence, sensitivity and PPV together give back the counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


def suppression_rule(minimum: int) -> str:
    """The rule in words, for the report and the card that a committee signs."""
    return (
        f"Within each attribute, a group's size is suppressed when it is under {minimum} rows, and its "
        f"positives when its size is suppressed or its positives or negatives are under {minimum}; when "
        "only one cell of a column would be suppressed, the next-smallest cell of that column is "
        "suppressed as well, so no suppressed count can be worked out from the totals. A group with a "
        "suppressed count shows no metrics or ratios."
    )


@dataclass(frozen=True)
class CellSuppression:
    """Which counts of one group are hidden; ``complementary`` when its size is hidden only so that
    a smaller group's size cannot be derived."""

    size: bool
    positives: bool
    complementary: bool

    @property
    def any(self) -> bool:
        return self.size or self.positives


def _complement(hidden: set[str], values: Mapping[str, int]) -> set[str]:
    """``hidden`` plus the next-smallest shown cell when exactly one cell is hidden."""
    if len(hidden) != 1:
        return hidden
    shown = sorted((value, group) for group, value in values.items() if group not in hidden)
    return hidden | ({shown[0][1]} if shown else set())


def suppress_cells(sizes: Mapping[str, int], positives: Mapping[str, int], minimum: int) -> dict[str, CellSuppression]:
    """The suppression of every group of one attribute, given each group's size and positives.

    Ties for the next-smallest cell go to the group whose label sorts first, so the result depends
    only on the counts and labels.
    """
    primary = {group for group, size in sizes.items() if size < minimum}
    hidden_sizes = _complement(primary, sizes)
    hidden_positives = {
        group
        for group, size in sizes.items()
        if group in hidden_sizes or positives[group] < minimum or size - positives[group] < minimum
    }
    hidden_positives = _complement(hidden_positives, positives)
    return {
        group: CellSuppression(
            size=group in hidden_sizes,
            positives=group in hidden_positives,
            complementary=group in hidden_sizes and group not in primary,
        )
        for group in sizes
    }


def count_text(value: int, hidden: bool, *, minimum: int, below_minimum: bool) -> str:
    """A count as shown: the number, ``"<N"`` for a cell under the threshold, else ``"suppressed"``."""
    if not hidden:
        return str(value)
    return f"<{minimum}" if below_minimum else "suppressed"
