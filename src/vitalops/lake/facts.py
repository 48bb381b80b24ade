"""The facts table: append-only, de-duplicated by ``fact_id``, partitioned by site and month, with
the one point-in-time (PIT) rule that both the offline and the online feature paths use.

The PIT rule, as of a moment T: a fact is visible when its source resource version is the one
current at T and the fact itself is known by T. When each version becomes known, and which one is
current, is ``vitalops.lake.versions`` (a first version at ``issued``, a later one at its own
``meta.lastUpdated``, never before the version it follows; whole-number version ids in numeric
order). Older versions stay in the table, so any past view can be rebuilt.

Each ``append`` is one Delta commit per chunk: a process killed mid-batch leaves whole chunks
committed and nothing half-written, and because appends skip fact ids already present, a rerun
adds exactly what is missing. The check for present ids and the commit run under a per-lake lock
(see ``FactsStore._commit_lock``), so concurrent ingests into one local lake add each fact once.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import ColumnProperties, DeltaTable, WriterProperties, write_deltalake

from vitalops.core import duck
from vitalops.core.clock import as_utc
from vitalops.lake.schema import FACTS_PARTITIONS, FACTS_SCHEMA, with_all_columns
from vitalops.lake.tables import table_exists, table_uri
from vitalops.lake.versions import fact_known_sql, version_intervals_sql

#: Facts per Delta commit: bounds memory and the work a crash can lose.
DEFAULT_COMMIT_ROWS = 100_000
#: Datasets of recently read table versions, by (table URI, the table's id, version): listing a
#: partitioned table's files costs about 0.3 s a time, and a monitoring run reads the same version
#: three times. A Delta version never changes; a table deleted and created again has a new id.
_DATASETS: dict[tuple[str, str, int], ds.Dataset] = {}
_DATASETS_KEPT = 4
_DATASETS_LOCK = threading.Lock()
_END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)
#: The lock file, under the lake root, that serializes de-duplication and commit of facts.
_LOCK_FILE = ".facts.lock"
#: Parquet settings for fact files: no dictionary for the columns unique to each fact (a dictionary
#: of random hashes only costs time to try and build), dictionaries and Snappy for the rest.
_UNIQUE_PER_FACT = ("fact_id", "source_id")
WRITER_PROPERTIES = WriterProperties(
    compression="SNAPPY",
    column_properties={name: ColumnProperties(dictionary_enabled=False) for name in _UNIQUE_PER_FACT},
)


def pit_facts_sql(view_name: str, as_of: str = "$as_of") -> str:
    """A DuckDB SELECT over ``view_name`` (a relation with the facts columns) returning the facts
    visible as of the SQL expression ``as_of`` (a parameter such as ``$as_of`` or a literal), each
    with ``known_at`` its known time under the rule and ``issued_at`` null (so the result is itself
    a facts relation the rule leaves unchanged)."""
    known = fact_known_sql("fact", "version")
    return f"""
WITH version AS ({version_intervals_sql(view_name)}),
placed AS (
    SELECT fact.* REPLACE ({known} AS known_at, CAST(NULL AS TIMESTAMPTZ) AS issued_at),
           version.superseded_at
    FROM {view_name} AS fact JOIN version USING (source_type, source_id, source_version)
)
SELECT * EXCLUDE (superseded_at) FROM placed
WHERE known_at <= {as_of} AND (superseded_at IS NULL OR superseded_at > {as_of})
"""


def facts_dataset(table: DeltaTable) -> ds.Dataset:
    """``table`` as a pyarrow dataset with every column of FACTS_SCHEMA: a table written before a
    column existed (``issued_at``) reads it as null."""
    dataset = table.to_pyarrow_dataset()
    missing = [f for f in FACTS_SCHEMA if f.name not in dataset.schema.names]
    if not missing:
        return dataset
    schema = dataset.schema
    for column in missing:
        schema = schema.append(column)
    return dataset.replace_schema(schema)


class FactsStore:
    """The ``facts`` Delta table under ``lake_root`` (a folder or an object-store URL)."""

    def __init__(self, lake_root: str, *, commit_rows: int = DEFAULT_COMMIT_ROWS) -> None:
        self.uri = table_uri(lake_root, "facts")
        self.commit_rows = commit_rows
        self._table: DeltaTable | None = None  # the table as last seen by ``_latest``

    def exists(self) -> bool:
        return table_exists(self.uri)

    @property
    def version(self) -> int | None:
        """The current Delta version, or None before the first commit."""
        return DeltaTable(self.uri).version() if self.exists() else None

    def dataset(self, version: int | None = None) -> ds.Dataset:
        """The table (at ``version``, default latest) as a pyarrow dataset; an empty in-memory one
        before the first commit."""
        if not self.exists():
            return ds.dataset(FACTS_SCHEMA.empty_table())
        table = DeltaTable(self.uri, version=version)
        key = (self.uri, table.metadata().id, table.version())
        with _DATASETS_LOCK:
            cached = _DATASETS.get(key)
        if cached is not None:
            return cached
        dataset = facts_dataset(table)
        with _DATASETS_LOCK:
            _DATASETS[key] = dataset
            while len(_DATASETS) > _DATASETS_KEPT:
                del _DATASETS[next(iter(_DATASETS))]
        return dataset

    def latest_known_at(self) -> datetime | None:
        """The latest ``known_at`` of any fact (None for an empty or missing table), from the Delta
        log's per-file statistics when every file has them (no fact is read), else from the column."""
        if not self.exists():
            return None
        table = DeltaTable(self.uri)
        actions = pa.table(table.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return None
        if "max.known_at" in actions.column_names and actions["max.known_at"].null_count == 0:
            latest = pc.max(actions["max.known_at"]).as_py()
        else:
            latest = pc.max(self.dataset().to_table(columns=["known_at"])["known_at"]).as_py()
        return None if latest is None else as_utc(latest)

    def append(self, facts: pa.Table, *, unique: bool = False) -> int:
        """Add the facts whose ``fact_id`` is not in the table yet; return how many were added.

        Commits at most ``commit_rows`` facts at a time, each commit atomic. ``unique`` says that no
        fact id repeats in ``facts`` (as in ``fact_rows.build_fact_table`` output), which saves
        looking for repeats.
        """
        if facts.schema != FACTS_SCHEMA:
            facts = facts.cast(FACTS_SCHEMA)
        added = 0
        for start in range(0, facts.num_rows, self.commit_rows):
            added += self._append_chunk(facts.slice(start, self.commit_rows), unique=unique)
        return added

    def _append_chunk(self, chunk: pa.Table, *, unique: bool) -> int:
        if not unique:
            chunk = _unique(chunk)
        with self._commit_lock():
            table = self._latest()
            fresh = chunk if table is None else self._without_existing(chunk, table)
            if fresh.num_rows == 0:
                return 0
            write_deltalake(
                self.uri if table is None else table,
                fresh,
                mode="append",
                partition_by=FACTS_PARTITIONS,
                writer_properties=WRITER_PROPERTIES,
                # a table from before a column was added (``issued_at``) gains it on the next append
                schema_mode="merge" if table is not None and _lacks_columns(table) else None,
            )
        return int(fresh.num_rows)

    def _latest(self) -> DeltaTable | None:
        """The table at its latest version (None before the first commit). Kept between appends and
        brought up to date by reading only the commits made since (another process may have made
        them), rather than reading the whole log again."""
        if self._table is None:
            if not self.exists():
                return None
            self._table = DeltaTable(self.uri)
        else:
            self._table.update_incremental()
        return self._table

    def compact(self, *, min_files: int = 2) -> int:
        """Merge small files within each partition into larger ones (one more atomic Delta commit;
        the facts do not change and earlier versions stay readable). Returns the files removed.

        Readers pay per file opened, and every ingest chunk adds a file per partition it touches,
        so an ingest compacts when it is done. Nothing happens while the table has fewer than
        ``min_files`` files per partition on average.
        """
        if not self.exists():
            return 0
        table = DeltaTable(self.uri)
        files = len(table.file_uris())
        partitions = len({tuple(sorted(p.items())) for p in table.partitions()})
        if files < min_files * max(partitions, 1):
            return 0
        with self._commit_lock():
            metrics = DeltaTable(self.uri).optimize.compact(writer_properties=WRITER_PROPERTIES)
        return int(metrics.get("numFilesRemoved", 0))

    @contextlib.contextmanager
    def _commit_lock(self) -> Iterator[None]:
        """Hold the lake's facts lock while a chunk is checked against the table and committed.

        Without it two ingests of the same resources into one lake could both find a fact missing
        and both add it. For a local lake the lock is ``fcntl.flock`` on ``.facts.lock`` beside the
        table (under the lake root), which serializes processes on this host and on file systems
        with working POSIX locks; the kernel releases it when a process dies, so a killed ingest
        never leaves it held. For an object-store lake (``s3://``, ``abfs://``, ``gs://``) there is
        no lock here: run one ingest per lake at a time there, because Delta's optimistic commits
        prevent torn writes but not two commits of the same new facts.
        """
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

    def _without_existing(self, chunk: pa.Table, table: DeltaTable) -> pa.Table:
        """``chunk`` minus the facts already in ``table``, reading only the fact ids of the
        (site, month) partitions the chunk touches."""
        if chunk.num_rows == 0:
            return chunk
        pairs = pa.Table.from_arrays([chunk["site"], chunk["month"]], names=["site", "month"])
        pairs = pairs.group_by(["site", "month"], use_threads=False).aggregate([])
        predicate = [
            [("site", "=", site), ("month", "in", pairs.filter(pc.equal(pairs["site"], site))["month"].to_pylist())]
            for site in pc.unique(pairs["site"]).to_pylist()
        ]
        files = table.file_uris(file_pruning_predicate=predicate)
        if not files:
            return chunk
        existing = ds.dataset(files, format="parquet").to_table(columns=["fact_id"])["fact_id"]
        if len(existing) == 0:
            return chunk
        return chunk.filter(pc.invert(pc.is_in(chunk["fact_id"], value_set=existing.combine_chunks())))

    def for_patients(self, patient_keys: Iterable[str], *, as_of: datetime | None = None) -> pa.Table:
        """The facts of ``patient_keys`` visible as of ``as_of`` (default: everything now known,
        still with superseded versions removed), sorted by patient, effective time and fact id."""
        keys = pa.array(sorted(set(patient_keys)), pa.string())
        facts = self.dataset().to_table(filter=pc.field("patient_key").isin(keys))
        return pit_view(facts, as_of)


def pit_view(facts: pa.Table, as_of: datetime | None = None) -> pa.Table:
    """Apply the PIT rule to an in-memory facts table (the online path calls this on the facts of
    a prefetch, the store on facts read from the lake)."""
    connection = duck.connect()
    try:
        connection.register("facts_in", with_all_columns(facts))
        moment = as_utc(as_of) if as_of is not None else _END_OF_TIME
        sql = pit_facts_sql("facts_in") + " ORDER BY patient_key, effective_at, fact_id"
        result = connection.sql(sql, params={"as_of": moment}).to_arrow_table()
    finally:
        connection.close()
    return result.select(FACTS_SCHEMA.names).cast(FACTS_SCHEMA)


def _lacks_columns(table: DeltaTable) -> bool:
    names = {f.name for f in table.schema().fields}
    return any(f.name not in names for f in FACTS_SCHEMA)


def _unique(chunk: pa.Table) -> pa.Table:
    """``chunk`` without repeated fact ids (the first occurrence wins)."""
    ids = chunk["fact_id"]
    if pc.count_distinct(ids).as_py() == chunk.num_rows:
        return chunk
    first = pa.Table.from_arrays([ids, pa.array(range(chunk.num_rows))], names=["fact_id", "row"])
    rows = first.group_by("fact_id", use_threads=False).aggregate([("row", "min")])["row_min"]
    return chunk.take(pc.sort_indices(rows))
