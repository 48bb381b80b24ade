"""What a batch scores: point-in-time rows of a cohort, or a given table of feature rows.

A cohort (``--cohort SPEC``) takes its index rows from the SPEC file's cohort and its features from
the definitions the version was trained on, so every vector is the one the model learned from,
computed by the training-set builder (facts effective and known by each row's index time).

``--at T`` keeps the index rows at or before T: every prediction the cohort would have had by T,
each seeing only what was known at its own index time (a backfill). With ``latest`` it keeps each
patient's latest row at or before T, and for a cohort scored at an interval (``every: 4h``) only
rows inside the last interval before T: the patients in the cohort at T (a census). Which rows the
cohort holds is decided on the facts as known now (the cohort is the sampling design, as in
training); the features of each row never see past its index time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from vitalops.core.clock import as_utc
from vitalops.errors import InvalidInput, NotFound
from vitalops.features.definitions import DatasetSpec, duration_us, load_spec
from vitalops.features.training_set import build_training_set
from vitalops.lake.tables import table_exists

KEY_COLUMNS = ("patient_key", "site", "index_time")
_TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class BatchInput:
    """The rows to score (sorted, with ``row`` their position) and where they came from."""

    rows: pa.Table
    kind: str  # cohort | table
    lineage: dict[str, Any]


def cohort_spec(cohort_file: Path, trained_on: DatasetSpec) -> DatasetSpec:
    """The version's definitions with the cohort of ``cohort_file``."""
    spec = load_spec(cohort_file)
    return trained_on.model_copy(update={"cohort": spec.cohort})


def cohort_rows(spec: DatasetSpec, lake_root: str, *, engine: str, scheduler: str | None,
                progress: Callable[[int, int], None] | None) -> tuple[pa.Table, dict[str, Any]]:
    """The cohort's point-in-time rows (the training-set builder's table) and their lineage."""
    built = build_training_set(spec, lake_root, engine=engine, scheduler=scheduler, progress=progress)
    lineage = {"definitions_version": spec.version, "facts_version": built.fingerprint.facts_version,
               "training_set_sha256": built.fingerprint.content_sha256}
    return built.table, lineage


def read_table(uri: str) -> tuple[pa.Table, dict[str, Any]]:
    """A Delta table (its latest version) or a Parquet file or folder at ``uri``."""
    if table_exists(uri):
        delta = DeltaTable(uri)
        return delta.to_pyarrow_table(), {"uri": uri, "format": "delta", "delta_version": int(delta.version())}
    try:
        table = ds.dataset(uri, format="parquet").to_table()
    except (FileNotFoundError, pa.ArrowInvalid) as exc:
        raise NotFound("no Delta table or Parquet data at --input", details={"field": "input"}) from exc
    return table, {"uri": uri, "format": "parquet"}


def check_keys(table: pa.Table) -> pa.Table:
    """``table`` with ``index_time`` as UTC microseconds; InvalidInput names a missing key column
    or an index time that is not given."""
    missing = [name for name in KEY_COLUMNS if name not in table.column_names]
    if missing:
        raise InvalidInput(f"the input lacks columns: {', '.join(missing)}", details={"field": missing[0]})
    times = table.column("index_time")
    if not pa.types.is_timestamp(times.type):
        raise InvalidInput("index_time must be a timestamp column", details={"field": "index_time"})
    if times.null_count or table.column("site").null_count:
        raise InvalidInput("every row needs its site and index_time", details={"field": "index_time"})
    if times.type.tz is None:
        raise InvalidInput("index_time must carry its time zone (UTC)", details={"field": "index_time"})
    return table.set_column(table.column_names.index("index_time"), "index_time", pc.cast(times, _TIMESTAMP))


def restrict(table: pa.Table, *, at: datetime | None, latest: bool, every: str | None, site: str | None
             ) -> pa.Table:
    """The rows at ``site`` (all when None) at or before ``at``; with ``latest``, each patient's
    latest such row, within ``every`` of ``at`` when the cohort runs at an interval."""
    if site is not None:
        table = table.filter(pc.equal(table.column("site"), site))
    if at is None:
        if latest:
            raise InvalidInput("--latest needs --at", details={"field": "at"})
        return table
    moment = pa.scalar(as_utc(at), _TIMESTAMP)
    table = table.filter(pc.less_equal(table.column("index_time"), moment))
    if not latest:
        return table
    if every is not None:
        since = pa.scalar(int(moment.cast(pa.int64()).as_py()) - duration_us(every), pa.int64()).cast(_TIMESTAMP)
        table = table.filter(pc.greater(table.column("index_time"), since))
    newest = table.group_by(["patient_key", "site"], use_threads=False).aggregate([("index_time", "max")])
    newest = newest.rename_columns(["patient_key", "site", "index_time"])
    return table.join(newest, keys=["patient_key", "site", "index_time"], join_type="inner")


def ordered(table: pa.Table) -> pa.Table:
    """Rows in a stable order (patient, index time, encounter when given, site) numbered by ``row``."""
    keys = [("patient_key", "ascending"), ("index_time", "ascending")]
    if "encounter_key" in table.column_names:
        keys.append(("encounter_key", "ascending"))
    keys.append(("site", "ascending"))
    table = table.take(pc.sort_indices(table, sort_keys=keys)).combine_chunks()
    return table.append_column("row", pa.array(range(table.num_rows), pa.int64()))
