"""The columnar fast path for Observation NDJSON: a block of lines parsed and shaped by DuckDB's
JSON reader (native code, on every core), normalized with Arrow compute, and only the values that
repeat (codes with their units, patient and encounter references) resolved in Python.

Like ``fast_observations`` it changes nothing about what a fact is: concept lookup, unit
conversion (the same affine map ``to_canonical`` applies), pseudonyms and fact ids are the same,
and a line is taken only when its shape is one ``fast_observations`` has proved it handles
exactly as the per-resource path would. On top of those rules it guards against what DuckDB's
reader accepts and strict JSON does not:

* a line is taken only when msgspec decodes it into ``fast_observations``' types: that is strict
  JSON (DuckDB reads ``NaN``, ``Infinity`` and trailing commas, which the per-resource path
  rejects) with every element read here of the JSON type it must have (DuckDB would turn ``5``
  into ``"5"`` and ``"12"`` into ``12.0``). msgspec checks the lines while DuckDB reads the block;
* the block must come back as many rows as it has lines, so that row ``i`` is line ``i``.

DuckDB reads a block from a file: each block is written to a private temporary folder and
deleted as soon as it is read (see ``docs/security.md``).

A block that fails a guard, or that DuckDB refuses (an element of the wrong shape, such as an
object where FHIR has a list), goes to ``fast_observations`` whole, which hands each odd line on
to the per-resource path; a line that passes the guards but not the shape rules goes to the
per-resource path alone. A test runs all three paths over the synthetic hospital and over files of
odd and bad lines and compares every fact, count and quarantine record.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from vitalops.fhir.readers import records_of_line
from vitalops.ingest.extract_common import SITE_TAG_SYSTEM, Context, pick_coding
from vitalops.ingest.extract_observation import CATEGORY_KINDS, NUMERIC_KINDS, SKIPPED_STATUSES
from vitalops.ingest.fast_observations import FastObservations, decodable_lines
from vitalops.ingest.normalize import BlockProvenance, ChunkNormalization
from vitalops.terminology import UnitError, normalize_unit_text
from vitalops.terminology.units import canonical_affine

_CODINGS = "STRUCT(system VARCHAR, code VARCHAR)[]"
_CONCEPT = f"STRUCT(coding {_CODINGS})"
_QUANTITY = "STRUCT(value DOUBLE, unit VARCHAR, code VARCHAR)"
#: The elements read: those ``fast_observations`` decodes, with the same types (a line is read
#: here only when msgspec has decoded it into those types, so DuckDB never has to cast a value).
_COLUMNS = {
    "resourceType": "VARCHAR",
    "id": "VARCHAR",
    "meta": f"STRUCT(versionId VARCHAR, lastUpdated VARCHAR, tag {_CODINGS})",
    "status": "VARCHAR",
    "subject": "STRUCT(reference VARCHAR)",
    "encounter": "STRUCT(reference VARCHAR)",
    "context": "JSON",
    "effectiveDateTime": "VARCHAR",
    "issued": "VARCHAR",
    "category": f"{_CONCEPT}[]",
    "code": _CONCEPT,
    "valueQuantity": _QUANTITY,
    "component": f"STRUCT(code {_CONCEPT}, valueQuantity {_QUANTITY})[]",
}
_COLUMNS_SQL = "{" + ", ".join(f"{name}: '{kind}'" for name, kind in _COLUMNS.items()) + "}"

_MACROS = """
CREATE OR REPLACE TEMP MACRO zoned(t) AS
    (coalesce(length(t) > 10 AND (right(t, 1) = 'Z' OR substr(t, length(t) - 5, 1) IN ('+', '-')), false));
CREATE OR REPLACE TEMP MACRO local_id_ok(ref, prefix) AS
    (coalesce(starts_with(ref, prefix) AND length(ref) > length(prefix)
              AND NOT contains(substr(ref, length(prefix) + 1), '/'), false));
CREATE OR REPLACE TEMP MACRO raw_unit(q) AS (CASE WHEN q.code <> '' THEN q.code ELSE q.unit END);
CREATE OR REPLACE TEMP MACRO value_pair(c, q) AS
    (to_json({c: list_transform(c.coding, lambda x: [x.system, x.code]), u: raw_unit(q)})::VARCHAR);
"""

# One row per line, in line order. ``candidate`` holds the shape rules that need no lookup; the
# Python side adds the decoding rule, the unit rule (a value whose unit does not convert) and the
# panel rule.
_QUERY = """
WITH raw AS (
    SELECT * FROM read_json($path, format = 'newline_delimited', columns = {columns})
), shaped AS (
    SELECT
        resourceType AS resource_type,
        id,
        status,
        effectiveDateTime AS effective,
        coalesce(issued, meta.lastUpdated) AS known,
        CASE WHEN meta.versionId <> '' THEN meta.versionId ELSE meta.lastUpdated END AS version,
        subject.reference AS subject_ref,
        encounter IS NULL AS no_encounter,
        encounter.reference AS encounter_ref,
        context IS NULL AS no_context,
        list_filter(meta.tag, lambda t: t.system = $site_system AND t.code <> '')[1].code AS site_tag,
        list_filter(flatten(list_transform(category, lambda c: list_transform(c.coding, lambda x: x.code))),
            lambda k: k IN ('vital-signs', 'laboratory'))[1] AS category_code,
        valueQuantity IS NOT NULL AS has_quantity,
        coalesce(len(component), 0) AS components,
        CASE WHEN valueQuantity IS NULL THEN [] ELSE [{{
            ordinal: 0, pair: value_pair(code, valueQuantity), value: valueQuantity.value, present: true
        }}] END
        || CASE WHEN valueQuantity IS NOT NULL AND coalesce(len(component), 0) = 0 THEN [] ELSE
            coalesce(list_transform(component, lambda p, i: {{
                ordinal: i, pair: value_pair(p.code, p.valueQuantity), value: p.valueQuantity.value,
                present: p.valueQuantity IS NOT NULL
            }}), []) END AS "values"
    FROM raw
)
SELECT
    coalesce(resource_type = 'Observation' AND id <> '' AND status <> ''
        AND status NOT IN ({skipped}) AND version <> ''
        AND local_id_ok(subject_ref, 'Patient/')
        AND ((no_encounter AND no_context) OR (NOT no_encounter AND local_id_ok(encounter_ref, 'Encounter/')))
        AND zoned(effective) AND (known IS NULL OR zoned(known))
        AND len("values") > 0
        AND list_bool_and(list_transform("values", lambda v: v.present AND isfinite(v.value))), false)
        AS candidate,
    NOT has_quantity AS needs_value_count,
    components,
    coalesce(site_tag, $default_site) AS site,
    subject_ref,
    CASE WHEN no_encounter THEN NULL ELSE encounter_ref END AS encounter_ref,
    CASE category_code WHEN 'vital-signs' THEN '{vital}' WHEN 'laboratory' THEN '{lab}' ELSE 'observation' END
        AS category_kind,
    status, effective, coalesce(known, $known_default) AS known, version,
    sha256($opad || unhex(sha256($ipad || encode('Observation/' || id)))) AS source_id,
    "values"
FROM shaped
""".format(
    columns=_COLUMNS_SQL,
    skipped=", ".join(f"'{status}'" for status in sorted(SKIPPED_STATUSES)),
    vital=CATEGORY_KINDS["vital-signs"],
    lab=CATEGORY_KINDS["laboratory"],
)


_VALUE_KEY = b'"value'
_REFERENCE_CACHE_LIMIT = 1_000_000
_PAIR_CACHE_LIMIT = 100_000
_NOT_STARTED: Any = object()
_WRITE_BUFFER = 4 << 20
_SHM_SPARE = 1 << 30  # bytes free on /dev/shm before blocks are written there
_DUCKDB_ERRORS = (duckdb.Error,)
#: A NUL escaped in a string: DuckDB text cannot hold it as Python text does.
_ESCAPED_NUL = b"\\u0000"
#: The columns ``_Resolved`` entries give a fact.
_LOOKUP_TYPES = (
    ("code_system", pa.string()),
    ("code", pa.string()),
    ("concept", pa.string()),
    ("numeric_kind", pa.string()),
    ("unit", pa.string()),
    ("scale", pa.float64()),
    ("offset", pa.float64()),
)
#: (system, code, concept name, numeric kind or None, unit, scale or None, offset or None) of a
#: value coded and united so, or None when its unit does not convert (the line is not taken).
_Resolved = tuple[Any, Any, Any, Any, Any, Any, Any] | None


class ColumnarObservations:
    """Normalizes blocks of Observation NDJSON lines into a ``ChunkNormalization``; its caches and
    DuckDB connection live for one ingest run (``close`` when done)."""

    def __init__(self, ctx: Context, *, min_block_lines: int = 2_000) -> None:
        self.ctx = ctx
        # A smaller block goes to ``fast_observations``: starting DuckDB costs more than it saves.
        self.min_block_lines = min_block_lines
        self.fallback = FastObservations(ctx)
        self._pairs: dict[str, _Resolved] = {}
        self._references: dict[str, str] = {}  # "Patient/<id>" or "Encounter/<id>" -> its pseudonym
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-read")
        self._folder = tempfile.TemporaryDirectory(
            prefix="vitalops-ingest-", dir=_block_folder(), ignore_cleanup_errors=True
        )
        self.taken = 0  # lines normalized here
        self.blocks_refused = 0  # blocks handed whole to ``fast_observations``

    def close(self) -> None:
        self._reader.shutdown()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._folder.cleanup()

    def __enter__(self) -> ColumnarObservations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, lines: list[bytes]) -> Future[pa.Table | None] | None:
        """Start DuckDB reading a block (it releases the GIL) and return the read under way, or None
        for a block too small to be worth it. Pass it to ``add_lines`` with the same lines; a caller
        that starts the next block before adding this one keeps the reader busy meanwhile."""
        if len(lines) < self.min_block_lines:
            return None
        return self._reader.submit(self._read, lines)

    def add_lines(
        self,
        chunk: ChunkNormalization,
        file: str,
        first_line: int,
        lines: list[bytes],
        reading: Future[pa.Table | None] | None = _NOT_STARTED,
    ) -> None:
        """Normalize NDJSON ``lines`` (the first is line ``first_line`` of ``file``) into ``chunk``;
        ``reading`` is what ``start(lines)`` returned, if it was called."""
        if reading is _NOT_STARTED:
            reading = self.start(lines)
        if reading is None:
            self.fallback.add_lines(chunk, file, first_line, lines)
            return
        # msgspec checks the lines here while DuckDB reads them.
        decodable = decodable_lines(lines)
        table = reading.result()
        if table is None:
            self.blocks_refused += 1
            self.fallback.add_lines(chunk, file, first_line, lines)
            return
        taken = self._taken(table, lines, decodable)
        indexes = self._assign_indexes(chunk, file, first_line, lines, taken)
        if not taken.any():
            return
        rows = table.filter(pa.array(taken))
        line_numbers = np.flatnonzero(taken) + first_line
        columns = self._fact_columns(rows, indexes[taken])
        chunk.add_columns(columns, BlockProvenance(file, indexes[taken], line_numbers, rows["site"].combine_chunks()))
        self.taken += int(taken.sum())

    def _read(self, lines: list[bytes]) -> pa.Table | None:
        """The block as DuckDB reads it, one row per line in line order, or None when DuckDB refuses
        it or its rows are not its lines (a blank line, which DuckDB skips)."""
        if not lines or any(_ESCAPED_NUL in line for line in lines):
            return None
        try:
            with tempfile.NamedTemporaryFile(dir=self._folder.name, suffix=".ndjson", buffering=_WRITE_BUFFER) as block:
                block.writelines(lines)  # no joined copy of the block: fewer fresh pages to fault in
                block.flush()
                table = self._query(block.name)
        except OSError:  # no room for the block (a small /dev/shm, a full TMPDIR): the msgspec path reads it
            return None
        return table if table is not None and table.num_rows == len(lines) else None

    def _query(self, path: str) -> pa.Table | None:
        ipad, opad = self.ctx.pseudonyms.hmac_pads()
        parameters = {
            "path": path,
            "site_system": SITE_TAG_SYSTEM,
            "default_site": self.ctx.default_site,
            "known_default": self.ctx.known_at_default,
            "ipad": ipad,
            "opad": opad,
        }
        try:
            return self._database().sql(_QUERY, params=parameters).to_arrow_table()
        except _DUCKDB_ERRORS:
            return None

    def _database(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None:
            self._connection = duckdb.connect()
            self._connection.execute(_MACROS)
        return self._connection

    def _taken(self, table: pa.Table, lines: list[bytes], decodable: np.ndarray) -> np.ndarray:
        """Which lines this path normalizes: the candidates whose panel and units pass too."""
        taken: np.ndarray = np.asarray(table["candidate"].to_numpy(zero_copy_only=False), dtype=bool) & decodable
        needs_count = taken & table["needs_value_count"].to_numpy(zero_copy_only=False)
        components = table["components"].to_numpy(zero_copy_only=False)
        # A panel without a value of its own is taken only when its every '"value' key belongs to a
        # component Quantity (the per-resource path looks at every value[x] of the resource).
        for i in np.flatnonzero(needs_count):
            if lines[i].count(_VALUE_KEY) != 2 * components[i]:
                taken[i] = False
        values = table["values"].combine_chunks()
        parents = pc.list_parent_indices(values).to_numpy()
        pairs = pc.list_flatten(values).field("pair")
        encoded = pairs.dictionary_encode()
        resolved = [self._resolve(pair) for pair in encoded.dictionary.to_pylist()]
        unconvertible = np.array([entry is None for entry in resolved], dtype=bool)
        if unconvertible.any():
            bad_values = unconvertible[encoded.indices.to_numpy(zero_copy_only=False)]
            taken[np.unique(parents[bad_values])] = False
        return taken

    def _assign_indexes(
        self, chunk: ChunkNormalization, file: str, first_line: int, lines: list[bytes], taken: np.ndarray
    ) -> np.ndarray:
        """The resource index of each taken line, in line order with the resources of the lines left
        to the per-resource path (which it normalizes here, in order)."""
        indexes = np.zeros(len(lines), dtype=np.int64)
        start = 0
        for position in np.flatnonzero(~taken):
            run = int(position) - start
            indexes[start:position] = np.arange(chunk.read, chunk.read + run)
            chunk.read += run
            for record in records_of_line(file, first_line + int(position), lines[position]):
                chunk.add_record(record)
            start = int(position) + 1
        run = len(lines) - start
        indexes[start:] = np.arange(chunk.read, chunk.read + run)
        chunk.read += run
        return indexes

    def _fact_columns(self, rows: pa.Table, indexes: np.ndarray) -> dict[str, pa.Array]:
        """One fact per value of the taken lines, in line order, then ordinal."""
        values = rows["values"].combine_chunks()
        parents = pc.list_parent_indices(values)
        flat = pc.list_flatten(values)
        encoded = flat.field("pair").dictionary_encode()
        entries = [self._resolve(pair) for pair in encoded.dictionary.to_pylist()]
        # Only taken lines are here, and a line with a value whose unit does not convert is not taken.
        distinct = list(zip(*entries, strict=True)) if entries else [()] * len(_LOOKUP_TYPES)
        lookup = {
            name: pc.take(pa.array(column, kind), encoded.indices)
            for (name, kind), column in zip(_LOOKUP_TYPES, distinct, strict=True)
        }

        def per_value(name: str) -> pa.Array:
            return pc.take(rows[name].combine_chunks(), parents)

        raw = flat.field("value")
        converted = pc.add(pc.multiply(raw, lookup["scale"]), lookup["offset"])
        count = len(flat)
        return {
            "site": per_value("site"),
            "patient_key": pc.take(self._keys(rows["subject_ref"], "Patient/"), parents),
            "kind": pc.coalesce(lookup["numeric_kind"], per_value("category_kind")),
            "concept": lookup["concept"],
            "code_system": lookup["code_system"],
            "code": lookup["code"],
            "value_num": pc.if_else(pc.is_null(lookup["scale"]), raw, converted),
            "value_code": pa.nulls(count, pa.string()),
            "unit": lookup["unit"],
            "status": per_value("status"),
            "encounter_key": pc.take(self._keys(rows["encounter_ref"], "Encounter/"), parents),
            "effective_at": per_value("effective"),
            "effective_end": pa.nulls(count, pa.string()),
            "known_at": per_value("known"),
            "source_type": pa.array(["Observation"] * count, pa.string()),
            "source_id": per_value("source_id"),
            "source_version": per_value("version"),
            "ordinal": flat.field("ordinal").cast(pa.int64()),
            "resource_index": pc.take(pa.array(indexes, pa.int64()), parents),
        }

    def _keys(self, references: pa.ChunkedArray, prefix: str) -> pa.Array:
        """The pseudonym of each ``<prefix><id>`` reference (None stays None), one HMAC per distinct id."""
        encoded = references.combine_chunks().dictionary_encode()
        cache = self._references
        keys = []
        for reference in encoded.dictionary.to_pylist():
            key = cache.get(reference)
            if key is None:
                if len(cache) >= _REFERENCE_CACHE_LIMIT:
                    cache.clear()
                key = cache[reference] = self.ctx.pseudonyms.resource_key(prefix[:-1], reference[len(prefix) :])
            keys.append(key)
        return pc.take(pa.array(keys, pa.string()), encoded.indices)

    def _resolve(self, pair: str) -> _Resolved:
        try:
            return self._pairs[pair]
        except KeyError:
            pass
        decoded = orjson.loads(pair)
        codings, raw_unit = decoded["c"], decoded["u"]
        if codings is None:
            system, code, concept = None, None, None
        else:
            as_json = {"coding": [{"system": s, "code": c} for s, c in codings]}
            system, code, concept = pick_coding(as_json, self.ctx)
        entry: _Resolved
        if concept is None:
            unit = None if raw_unit is None else normalize_unit_text(raw_unit)
            entry = (system, code, None, None, unit, None, None)
        else:
            try:
                scale, offset = canonical_affine(concept, raw_unit)
            except UnitError:
                entry = None
            else:
                kind = concept.kind if concept.kind in NUMERIC_KINDS else None
                entry = (system, code, concept.name, kind, concept.canonical_unit, scale, offset)
        if len(self._pairs) >= _PAIR_CACHE_LIMIT:  # a feed of endless distinct codes must not grow memory
            self._pairs.clear()
        self._pairs[pair] = entry
        return entry


def _block_folder() -> str | None:
    """Where blocks are written for DuckDB to read: the folder ``TMPDIR`` names when set, else a
    memory file system when there is one with room to spare (a block is written and read once),
    else the system's temporary folder. Each run makes a private (0700) folder inside it."""
    shared = "/dev/shm"  # noqa: S108 - only a private TemporaryDirectory is made inside it
    if os.environ.get("TMPDIR"):
        return None
    try:
        if os.path.isdir(shared) and os.access(shared, os.W_OK) and shutil.disk_usage(shared).free > _SHM_SPARE:
            return shared
    except OSError:
        pass
    return None
