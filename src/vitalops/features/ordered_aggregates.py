"""Mean and slope over values in a fixed order, defined once for both kernels.

A float64 sum depends on the order of its terms, and SQL engines do not promise theirs (DuckDB's
``avg`` and ``regr_slope`` keep their own running states). So both kernels compute these two
aggregates here, from the window's values ordered by ``(effective_at, fact_id)``:

* mean: ``s = 0.0; s = s + v`` for each value in order; ``mean = s / n`` (null when ``n = 0``);
* slope (per hour): hours ``h = (effective_at - index_time) / 3.6e9`` (integer microseconds,
  then one division); means ``mh``, ``mv`` as above; ``sxy = sum((h - mh) * (v - mv))`` and
  ``sxx = sum((h - mh) * (h - mh))`` in order; ``slope = sxy / sxx``, null when ``n < 2``,
  ``sxx = 0`` or the result is not finite.

The offline builder evaluates many groups at once with numpy (one elementwise step per position,
so each group sees exactly the operations of the scalar loop); the online kernel evaluates one
group in plain Python floats. Both are IEEE-754 float64 with one rounding per operation and no
fused multiply-add, so they agree bit for bit (``tests/features/test_ordered_aggregates.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from vitalops.features.facts_view import US_PER_HOUR


def mean_of(values: Sequence[float]) -> float | None:
    """The mean of ``values`` summed in the given order; None when there are none."""
    if not values:
        return None
    total = 0.0
    for value in values:
        total = total + value
    result = total / len(values)
    return result if math.isfinite(result) else None


def slope_of(effective_us: Sequence[int], values: Sequence[float], index_us: int) -> float | None:
    """The least-squares slope of ``values`` per hour against their times (epoch microseconds),
    in the given order; None when it is undefined (fewer than two values, or all at one time)."""
    count = len(values)
    if count < 2:
        return None
    hours = [float(at - index_us) / US_PER_HOUR for at in effective_us]
    sum_h = 0.0
    sum_v = 0.0
    for position in range(count):
        sum_h = sum_h + hours[position]
        sum_v = sum_v + values[position]
    mean_h = sum_h / count
    mean_v = sum_v / count
    sxy = 0.0
    sxx = 0.0
    for position in range(count):
        dh = hours[position] - mean_h
        sxy = sxy + dh * (values[position] - mean_v)
        sxx = sxx + dh * dh
    if not sxx > 0.0:
        return None
    result = sxy / sxx
    return result if math.isfinite(result) else None


def _padded(lists: pa.Array, dtype: type[np.generic]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values rows x width, mask of real entries, counts) from an Arrow list array (null = empty)."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    counts = np.asarray(lists.value_lengths().fill_null(0), dtype=np.int64)
    width = int(counts.max()) if len(counts) else 0
    mask = np.arange(width)[None, :] < counts[:, None]
    padded = np.zeros((len(counts), width), dtype=dtype)
    flat = np.asarray(lists.flatten(), dtype=dtype)
    padded[mask] = flat
    return padded, mask, counts


def _as_nullable(result: np.ndarray, defined: np.ndarray) -> pa.Array:
    defined = defined & np.isfinite(result)
    return pa.array(np.where(defined, result, 0.0), type=pa.float64(), mask=~defined)


def means(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``mean_of`` of each list in ``values`` (list<double>, in order); null for an empty list."""
    padded, _, counts = _padded(values, np.float64)
    total = np.zeros(len(counts))
    for position in range(padded.shape[1]):
        total = total + padded[:, position]  # padding adds +0.0, which leaves every sum unchanged
    with np.errstate(divide="ignore", invalid="ignore"):
        result = total / counts
    return _as_nullable(result, counts > 0)


def slopes(
    effective_us: pa.Array | pa.ChunkedArray, values: pa.Array | pa.ChunkedArray, index_us: np.ndarray
) -> pa.Array:
    """``slope_of`` of each pair of lists (list<int64> times, list<double> values, same lengths)
    against each row's index time ``index_us``."""
    times, mask, counts = _padded(effective_us, np.int64)
    padded, _, _ = _padded(values, np.float64)
    hours = (times - np.asarray(index_us, dtype=np.int64)[:, None]).astype(np.float64) / US_PER_HOUR
    hours = np.where(mask, hours, 0.0)
    sum_h = np.zeros(len(counts))
    sum_v = np.zeros(len(counts))
    for position in range(padded.shape[1]):
        sum_h = sum_h + hours[:, position]
        sum_v = sum_v + padded[:, position]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_h = sum_h / counts
        mean_v = sum_v / counts
    sxy = np.zeros(len(counts))
    sxx = np.zeros(len(counts))
    for position in range(padded.shape[1]):
        real = mask[:, position]
        dh = hours[:, position] - mean_h
        sxy = np.where(real, sxy + dh * (padded[:, position] - mean_v), sxy)
        sxx = np.where(real, sxx + dh * dh, sxx)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = sxy / sxx
    return _as_nullable(result, (counts >= 2) & (sxx > 0.0))
