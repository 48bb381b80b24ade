"""The prediction archive: every prediction (served and shadow, online and batch) in one Delta
table under the lake, partitioned by model, site and day, for monitoring to read with DuckDB.

The schema is stable across models: a prediction's inputs are ``features`` (a list of float64 in
the version's feature order, null for a missing value), ``feature_names`` (that order) and
``features_json`` (the same values as a JSON array, exactly as the metadata database's prediction
log stores them). A prediction's id is its key: ``append`` adds only the ids the table does not
hold yet, so writing the same rows twice (a rerun after a crash) leaves one copy of each.

``at`` is the moment the prediction was made as of: the request's time online, the index time of
the row in a batch. ``day`` (``YYYY-MM-DD`` of ``at`` in UTC) is the partition. Batch rows carry no
explanation (``explanation_method`` and ``explanation_json`` null) and no ``latency_ms``; their
``request_id`` is the batch run id.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable, write_deltalake

from vitalops.lake.tables import table_exists, table_uri

ARCHIVE_TABLE = "prediction_archive"
ARCHIVE_PARTITIONS = ["model", "site", "day"]
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_LOCK_FILE = ".prediction_archive.lock"

PREDICTION_ARCHIVE_SCHEMA = pa.schema(
    [
        pa.field("prediction_id", pa.string(), nullable=False),
        pa.field("at", _TIMESTAMP, nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("artifact_sha256", pa.string(), nullable=False),
        pa.field("definitions_version", pa.string()),
        pa.field("site", pa.string(), nullable=False),
        pa.field("day", pa.string(), nullable=False),  # partition: YYYY-MM-DD of ``at`` (UTC)
        pa.field("patient_key", pa.string()),
        pa.field("deployment_event_id", pa.int64()),
        pa.field("mode", pa.string(), nullable=False),  # champion | canary | ab | shadow | direct
        pa.field("served", pa.bool_(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("band", pa.string(), nullable=False),
        pa.field("decision", pa.bool_(), nullable=False),
        pa.field("feature_names", pa.list_(pa.string()), nullable=False),
        pa.field("features", pa.list_(pa.float64()), nullable=False),
        pa.field("features_json", pa.string(), nullable=False),
        pa.field("explanation_method", pa.string()),
        pa.field("explanation_json", pa.string()),
        pa.field("latency_ms", pa.float64()),
        pa.field("request_id", pa.string()),
        pa.field("input_kind", pa.string(), nullable=False),  # features | patient | fhir | cohort | table
        pa.field("actor", pa.string()),
    ]
)


def archive_uri(lake_root: str) -> str:
    return table_uri(lake_root, ARCHIVE_TABLE)


def days_of(at: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The ``day`` partition of each timestamp (UTC calendar day)."""
    return pc.strftime(pc.cast(at, _TIMESTAMP), format="%Y-%m-%d")


def feature_columns(matrix: np.ndarray, names: Sequence[str]) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(feature_names, features, features_json) for the rows of ``matrix`` (NaN = missing), whose
    columns are ``names``; ``features_json`` is each row as a JSON array with null for NaN, the
    form of the metadata database's log."""
    rows, width = matrix.shape
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    flat = np.ascontiguousarray(matrix, dtype=np.float64).ravel()
    values = pa.array(flat, mask=np.isnan(flat))
    features = pa.ListArray.from_arrays(offsets, values)
    name_values = pa.array(list(names), pa.string()).take(pa.array(np.tile(np.arange(width), rows)))
    feature_names = pa.ListArray.from_arrays(offsets, name_values)
    if rows == 0:
        return feature_names, features, pa.array([], pa.string())
    # One orjson call for the whole matrix, then split at the row boundaries: the text holds only
    # numbers and nulls, so "],[" occurs exactly between rows. orjson writes NaN as null.
    text = orjson.dumps(np.ascontiguousarray(matrix, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY)
    if width == 0:
        json_rows = ["[]"] * rows
    else:
        json_rows = ["[" + part + "]" for part in text[2:-2].decode().split("],[")]
    return feature_names, features, pa.array(json_rows, pa.string())


class PredictionArchive:
    """The archive table under ``lake_root`` (a folder or an object-store URL)."""

    def __init__(self, lake_root: str) -> None:
        self.uri = archive_uri(lake_root)

    def exists(self) -> bool:
        return table_exists(self.uri)

    def dataset(self) -> ds.Dataset:
        """The archive as a pyarrow dataset (register it in DuckDB as a view); empty before the first write."""
        if not self.exists():
            return ds.dataset(PREDICTION_ARCHIVE_SCHEMA.empty_table())
        return DeltaTable(self.uri).to_pyarrow_dataset()

    def append(self, rows: pa.Table) -> int:
        """Add the rows whose ``prediction_id`` the archive does not hold yet, in one atomic commit;
        return how many were added. Rows must have every column of PREDICTION_ARCHIVE_SCHEMA."""
        rows = rows.select(PREDICTION_ARCHIVE_SCHEMA.names).cast(PREDICTION_ARCHIVE_SCHEMA)
        if rows.num_rows == 0:
            return 0
        with self._commit_lock():
            table = DeltaTable(self.uri) if self.exists() else None
            fresh = rows if table is None else _without_existing(rows, table)
            if fresh.num_rows == 0:
                return 0
            write_deltalake(self.uri if table is None else table, fresh, mode="append",
                            partition_by=ARCHIVE_PARTITIONS)
        return int(fresh.num_rows)

    def holding(self, prediction_ids: Sequence[str]) -> set[str]:
        """Which of ``prediction_ids`` the archive holds."""
        if not self.exists() or not prediction_ids:
            return set()
        wanted = pa.array(list(prediction_ids), pa.string())
        found = self.dataset().to_table(columns=["prediction_id"], filter=pc.field("prediction_id").isin(wanted))
        return set(found.column("prediction_id").to_pylist())

    @contextlib.contextmanager
    def _commit_lock(self) -> Iterator[None]:
        """Serialize the check for present ids and the commit between processes on this host (as
        the facts table does); on an object store, run one archiving job per lake at a time."""
        if "://" in self.uri:
            yield
            return
        lock_path = Path(self.uri).parent / _LOCK_FILE
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _without_existing(rows: pa.Table, table: DeltaTable) -> pa.Table:
    """``rows`` minus the prediction ids already archived, reading only the partitions they touch."""
    keys = pa.Table.from_arrays([rows["model"], rows["site"], rows["day"]], names=ARCHIVE_PARTITIONS)
    keys = keys.group_by(ARCHIVE_PARTITIONS, use_threads=False).aggregate([])
    predicate = [
        [("model", "=", model), ("site", "=", site), ("day", "=", day)]
        for model, site, day in zip(keys["model"].to_pylist(), keys["site"].to_pylist(), keys["day"].to_pylist(),
                                    strict=True)
    ]
    files = table.file_uris(file_pruning_predicate=predicate)
    if not files:
        return rows
    existing = ds.dataset(files, format="parquet").to_table(columns=["prediction_id"])["prediction_id"]
    if len(existing) == 0:
        return rows
    return rows.filter(pc.invert(pc.is_in(rows["prediction_id"], value_set=existing.combine_chunks())))
