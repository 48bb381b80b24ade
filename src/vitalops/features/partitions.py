"""Patient partitions: the unit of work of the offline builder, identical locally and on Dask.

Patient keys are HMAC-SHA256 pseudonyms in hex, so ranges of their leading hex digits split
patients evenly; a partition reads only its key range from the Delta facts (a pushed-down range
filter) and runs the point-in-time kernel on it. ``build_partition`` is a plain function of plain
values so that a Dask worker runs exactly what the local engine runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from vitalops.core import duck
from vitalops.features.definitions import DatasetSpec
from vitalops.features.engine import register_index, select_features
from vitalops.features.facts_view import ENGINE_COLUMNS, register_facts
from vitalops.features.labels import compute_labels
from vitalops.lake.facts import facts_dataset
from vitalops.lake.tables import table_uri

FACTS_TABLE = "facts"
_PREFIX_DIGITS = 4


def facts_uri(lake_root: str) -> str:
    """Where the facts Delta table lives under ``lake_root``."""
    return table_uri(lake_root, FACTS_TABLE)


def open_facts(lake_root: str, version: int | None = None) -> tuple[ds.Dataset, int]:
    """The facts table at ``version`` (latest when None) as a pyarrow dataset, with its version."""
    table = DeltaTable(facts_uri(lake_root), version=version)
    return facts_dataset(table), int(table.version())


def key_ranges(partitions: int) -> list[tuple[str | None, str | None]]:
    """``partitions`` contiguous ranges of hex patient keys ``[lower, upper)``; None is open-ended."""
    partitions = max(1, partitions)
    space = 16**_PREFIX_DIGITS
    bounds = [format(space * k // partitions, f"0{_PREFIX_DIGITS}x") for k in range(1, partitions)]
    lowers: list[str | None] = [None, *bounds]
    uppers: list[str | None] = [*bounds, None]
    return list(zip(lowers, uppers, strict=True))


def key_filter(lower: str | None, upper: str | None) -> ds.Expression | None:
    """The dataset filter selecting patient keys in ``[lower, upper)``."""
    clauses = []
    if lower is not None:
        clauses.append(pc.field("patient_key") >= lower)
    if upper is not None:
        clauses.append(pc.field("patient_key") < upper)
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else clauses[0] & clauses[1]


def in_range(keys: pa.ChunkedArray | pa.Array, lower: str | None, upper: str | None) -> pa.Array:
    """Boolean mask of ``keys`` inside ``[lower, upper)``."""
    mask = pc.is_valid(keys)
    if lower is not None:
        mask = pc.and_(mask, pc.greater_equal(keys, lower))
    if upper is not None:
        mask = pc.and_(mask, pc.less(keys, upper))
    return mask


@dataclass(frozen=True)
class PartitionTask:
    """One partition's work: its key range, its index rows, and what it needs to compute them."""

    lake_root: str
    facts_version: int
    lower: str | None
    upper: str | None
    index: pa.Table
    spec: DatasetSpec
    as_of_us: int


@dataclass(frozen=True)
class PartitionResult:
    """Unimputed feature rows with labels, and how many facts the partition read."""

    rows: pa.Table
    facts_read: int


def compute_partition(facts: pa.Table, index: pa.Table, spec: DatasetSpec, as_of_us: int) -> pa.Table:
    """Features (unimputed) and labels for ``index`` from ``facts``, in index order."""
    con = duck.connect()
    try:
        register_facts(con, facts)
        index = register_index(con, index)
        features = select_features(con, index, spec)
        labels = compute_labels(con, spec.label, as_of_us)
    finally:
        con.close()
    for position, name in enumerate(labels.column_names):
        features = features.add_column(4 + position, name, labels.column(name))
    return features


def build_partition(task: PartitionTask) -> PartitionResult:
    """Read the task's key range of facts at its version and compute its rows."""
    dataset, _ = open_facts(task.lake_root, task.facts_version)
    facts = dataset.to_table(columns=list(ENGINE_COLUMNS), filter=key_filter(task.lower, task.upper))
    rows = compute_partition(facts, task.index, task.spec, task.as_of_us)
    return PartitionResult(rows=rows, facts_read=facts.num_rows)
