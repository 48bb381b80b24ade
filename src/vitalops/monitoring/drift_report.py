"""A drift report of a current table (or a stream of Arrow record batches) against a reference
table, by monitoring's aggregate-first path: each column reduced to its value counts
(``Distribution``), the reference's decile edges taken from its counts, and then the two drift
rules of ``monitoring.stats`` (``vitalops`` and ``evidently``) judged on those aggregates.

The rows are read once, a batch at a time; what is kept is the value counts, whose size is the
number of distinct values of each column (small for reported clinical values, which come at a
fixed precision), not the number of rows. Partial counts of separate batches or partitions add
up exactly, so a report over partitions on a Dask cluster (``value_counts_on_dask``) equals the
report over the whole table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vitalops.monitoring.metrics import MIN_ROWS_DRIFT
from vitalops.monitoring.reference import FeatureReference
from vitalops.monitoring.stats import DEFAULT_BINS, Distribution, Verdict, evidently_rule, is_categorical, vitalops_rule

Batches: TypeAlias = pa.Table | pa.RecordBatch | Iterable[pa.Table | pa.RecordBatch]


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdicts: ours (``vitalops``) and Evidently's default rule (``evidently``);
    None for both when the current data has fewer than ``MIN_ROWS_DRIFT`` values."""

    name: str
    categorical: bool
    reference_rows: int
    current_rows: int
    reference_missing_rate: float
    current_missing_rate: float
    vitalops: Verdict | None
    evidently: Verdict | None


@dataclass(frozen=True)
class DriftReport:
    columns: dict[str, ColumnDrift]
    #: (value, count) pairs held for the current data: the size of the aggregates.
    aggregate_points: int

    def flagged(self, rule: str = "vitalops") -> list[str]:
        """The columns that drifted under ``rule`` (``vitalops`` or ``evidently``)."""
        return [name for name, column in self.columns.items()
                if (verdict := getattr(column, rule)) is not None and verdict.drift]


def value_counts(batch: pa.Table | pa.RecordBatch, columns: Sequence[str]) -> dict[str, Distribution]:
    """Each of ``columns`` of ``batch`` as a Distribution (null or NaN is missing)."""
    result = {}
    for name in columns:
        values = batch.column(name)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        values = values.cast(pa.float64())
        present = values.filter(pc.invert(pc.is_nan(values)))  # a null's mask is null: dropped too
        counts = pc.value_counts(present)
        result[name] = Distribution.from_counts(np.asarray(counts.field("values")), np.asarray(counts.field("counts")),
                                                len(values) - len(present))
    return result


def merge(parts: Iterable[dict[str, Distribution]]) -> dict[str, Distribution]:
    """The value counts of several batches summed into those of their union (exact)."""
    pending: dict[str, list[Distribution]] = {}
    for part in parts:
        for name, distribution in part.items():
            pending.setdefault(name, []).append(distribution)
    return {name: Distribution.from_counts(np.concatenate([d.values for d in items]),
                                           np.concatenate([d.counts for d in items]),
                                           sum(d.missing for d in items))
            for name, items in pending.items()}


def stream_value_counts(batches: Batches, columns: Sequence[str], *, merge_every: int = 16
                        ) -> dict[str, Distribution]:
    """The value counts of a table or of a stream of batches, merged every ``merge_every`` batches
    so that what is held stays the size of the aggregates."""
    stream: Iterable[Any] = [batches] if isinstance(batches, pa.Table | pa.RecordBatch) else batches
    total: dict[str, Distribution] = {}
    pending: list[dict[str, Distribution]] = []
    for batch in stream:
        pending.append(value_counts(batch, columns))
        if len(pending) >= merge_every:
            total = merge([total, *pending])
            pending = []
    return merge([total, *pending]) if pending or not total else total


def reference_of(distributions: dict[str, Distribution], bins: int = DEFAULT_BINS) -> dict[str, FeatureReference]:
    """Each column's reference: its value counts, its quantile bin edges (``np.quantile`` of the rows,
    linear, ties merged, as ``governance.criteria.quantile_bin_edges``) and whether it is categorical."""
    result = {}
    for name, distribution in distributions.items():
        edges = (np.unique(distribution.quantiles(np.linspace(0.0, 1.0, bins + 1))[1:-1]) if distribution.n
                 else np.empty(0))
        result[name] = FeatureReference(name, distribution, edges, is_categorical(distribution))
    return result


def judge(reference: dict[str, FeatureReference], current: dict[str, Distribution]) -> DriftReport:
    """Both rules on every reference column, as the monitoring engine judges a window."""
    columns = {}
    for name, ref in reference.items():
        cur = current.get(name, Distribution(np.empty(0), np.empty(0), 0))
        enough = cur.n >= MIN_ROWS_DRIFT and ref.distribution.n > 0
        columns[name] = ColumnDrift(
            name, ref.categorical, ref.distribution.total, cur.total, ref.missing_rate, cur.missing_rate,
            vitalops_rule(ref.distribution, cur, edges=ref.edges) if enough else None,
            evidently_rule(ref.distribution, cur) if enough else None)
    return DriftReport(columns, sum(int(d.values.shape[0]) for d in current.values()))


def drift_report(reference: Batches, current: Batches, columns: Sequence[str]) -> DriftReport:
    """The drift report of ``current`` against ``reference`` (each a table or a stream of batches)."""
    return judge(reference_of(stream_value_counts(reference, columns)), stream_value_counts(current, columns))


def counts_of_partition(load: Callable[..., pa.Table], argument: Any, columns: Sequence[str]
                        ) -> dict[str, Distribution]:
    """The value counts of the partition ``load(argument)`` returns: run where the partition is
    made or read, so that only its counts travel."""
    return value_counts(load(argument), columns)


def value_counts_on_dask(client: Any, load: Callable[..., pa.Table], arguments: Sequence[Any],
                         columns: Sequence[str]) -> dict[str, Distribution]:
    """The value counts of the partitions ``load(a)`` for each of ``arguments``, each counted on a
    worker of the Dask ``client`` and summed here as they complete."""
    from vitalops.core.extras import import_extra

    distributed = import_extra("distributed")
    futures = client.map(counts_of_partition, [load] * len(arguments), list(arguments),
                         [list(columns)] * len(arguments), pure=False)
    total: dict[str, Distribution] = {}
    for future in distributed.as_completed(futures):
        total = merge([total, future.result()])
        future.release()
    return total
