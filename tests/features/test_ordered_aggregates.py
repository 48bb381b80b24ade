"""Mean and slope: the vectorised form (offline) and the scalar form (online) agree bit for bit,
and the values are the textbook ones."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalops.features.ordered_aggregates import mean_of, means, slope_of, slopes

HOUR_US = 3_600_000_000
_values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=64)
_groups = st.lists(
    st.lists(st.tuples(st.integers(-72 * HOUR_US, 0), _values), max_size=12), min_size=1, max_size=8
)


def _hex(values: list[float | None]) -> list[str | None]:
    return [None if value is None else float(value).hex() for value in values]


@settings(max_examples=150, deadline=None, database=None)
@given(groups=_groups, index_us=st.integers(0, 10 * HOUR_US))
def test_vectorised_and_scalar_forms_agree_bit_for_bit(groups: list, index_us: int) -> None:
    times = pa.array([[index_us + at for at, _ in group] for group in groups], pa.list_(pa.int64()))
    values = pa.array([[value for _, value in group] for group in groups], pa.list_(pa.float64()))
    index = np.full(len(groups), index_us, dtype=np.int64)
    scalar_means = [mean_of([value for _, value in group]) for group in groups]
    scalar_slopes = [slope_of([index_us + at for at, _ in group], [v for _, v in group], index_us) for group in groups]
    assert _hex(means(values).to_pylist()) == _hex(scalar_means)
    assert _hex(slopes(times, values, index).to_pylist()) == _hex(scalar_slopes)


def test_values_are_the_textbook_ones() -> None:
    assert mean_of([80.0, 90.0, 100.0]) == 90.0
    assert slope_of([HOUR_US, 3 * HOUR_US, 5 * HOUR_US], [80.0, 90.0, 100.0], 6 * HOUR_US) == pytest.approx(5.0)
    assert mean_of([]) is None
    assert slope_of([HOUR_US], [80.0], 2 * HOUR_US) is None  # one point has no slope
    assert slope_of([HOUR_US, HOUR_US], [80.0, 90.0], 2 * HOUR_US) is None  # nor do simultaneous ones
    assert means(pa.array([None, []], pa.list_(pa.float64()))).to_pylist() == [None, None]
