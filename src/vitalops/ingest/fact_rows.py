"""Turn extracted rows into a facts table (``FACTS_SCHEMA``): timestamps parsed a column at a time,
``known_at`` clamped, ``month`` derived, ``fact_id`` computed, duplicates within the chunk dropped.

``fact_id`` is sha256 over the site, source type, pseudonymous source id, source version, ordinal
in the resource and the fact's content (everything but ``known_at``, ``issued_at``,
``source_unit``, ``effective_basis`` and ``batch_id``), so the same resource ingested twice, by
any batch, at any time, gives the same ids.

A few rows (a CDS Hooks prefetch) are assembled as Python lists instead (``build_fact_rows``):
a column block's Arrow calls cost more than the rows themselves there. Both read dates with the
same Arrow cast and hash ids with ``fact_ids``; ``tests/ingest/test_small_batches.py`` holds them
to the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vitalops.ingest import native
from vitalops.ingest.extract_common import Row
from vitalops.lake.schema import FACTS_SCHEMA, TIMESTAMP

ROW_FIELDS = (
    "site",
    "patient_key",
    "kind",
    "concept",
    "code_system",
    "code",
    "value_num",
    "value_code",
    "unit",
    "status",
    "encounter_key",
    "effective_at",
    "effective_end",
    "known_at",
    "source_type",
    "source_id",
    "source_version",
    "ordinal",
    "resource_index",
    "issued_at",
    "source_unit",
    "effective_basis",
)
_TIME_FIELDS = ("effective_at", "effective_end", "known_at", "issued_at")
_INDEX = {name: i for i, name in enumerate(ROW_FIELDS)}
# Everything but the times a version became available (known_at is the ingest time when the source
# has no lastUpdated; issued_at came after ids were fixed, and a fact's id must not change), the
# source unit and the effective basis (added after ids were fixed too; the canonical value and unit,
# and the effective time itself, are in the id) and the resource index.
_ID_FIELDS = tuple(
    i
    for i, name in enumerate(ROW_FIELDS)
    if name not in ("known_at", "issued_at", "source_unit", "effective_basis", "resource_index")
)


@dataclass
class BuiltFacts:
    """A facts table plus what was dropped on the way."""

    table: pa.Table
    bad_time_resources: set[int]  # resource indexes with a date Arrow could not read
    duplicates: int  # fact rows dropped because an identical fact came earlier in the chunk


#: Columns held as text; the rest (value_num, ordinal, resource_index) are numbers.
_TEXT_FIELDS = tuple(name for name in ROW_FIELDS if name not in ("value_num", "ordinal", "resource_index"))
_ID_NAMES = tuple(ROW_FIELDS[i] for i in _ID_FIELDS)
#: The Arrow type of each row field in a column block (``build_fact_table``).
COLUMN_TYPES = {name: pa.string() for name in _TEXT_FIELDS} | {
    "value_num": pa.float64(),
    "ordinal": pa.int64(),
    "resource_index": pa.int64(),
}


def fact_ids(columns: dict[str, pa.Array]) -> pa.Array:
    """The ``fact_id`` of each row: sha256 (hex) of the ``str`` of every id field (``None`` spelt
    ``"None"``) joined by ``"\\x1f"``, in ``ROW_FIELDS`` order (``native.sha256_rows_hex``)."""
    return native.sha256_rows_hex([columns[name] for name in _ID_NAMES])


def rows_to_columns(rows: list[Row]) -> dict[str, pa.Array]:
    """Row tuples (``ROW_FIELDS`` order) as a column block."""
    if not rows:
        return {name: pa.array([], COLUMN_TYPES[name]) for name in ROW_FIELDS}
    columns = list(zip(*rows, strict=True))
    return {name: pa.array(columns[i], COLUMN_TYPES[name]) for i, name in enumerate(ROW_FIELDS)}


def _unreadable_times(texts: pa.Array) -> np.ndarray:
    """Which texts Arrow cannot read as a timestamp: halves of the column are tried in turn, so
    finding a few bad dates among many costs a few casts, and "bad" is exactly what the cast says."""
    bad = np.zeros(len(texts), dtype=bool)
    pending = [(0, len(texts))]
    while pending:
        start, stop = pending.pop()
        try:
            texts.slice(start, stop - start).cast(TIMESTAMP)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if stop - start == 1:
                bad[start] = True
            else:
                middle = (start + stop) // 2
                pending += [(start, middle), (middle, stop)]
    return bad


# The ``month`` partition. Partitions must stay few and dense, or every reader pays to open
# near-empty files: a patient's slowly changing history (birth, sex, conditions with onsets
# decades back) shares one ``history`` partition per site, and any other fact effective before
# 2000 shares ``before-2000``. Derived from the fact's kind and ``effective_at`` only, so a fact's
# partition never depends on when it was ingested (which de-duplication relies on).
PARTITION_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
BEFORE_FLOOR = "before-2000"
HISTORY = "history"
HISTORY_KINDS = ("demographic", "condition")


def _months(effective: pa.Array, kinds: pa.Array | None = None) -> pa.Array:
    """The ``month`` partition of each fact: ``history`` for the kinds in ``HISTORY_KINDS``, else
    ``YYYY-MM`` of its UTC ``effective_at`` or ``before-2000``; formatted once per distinct month."""
    months = pc.floor_temporal(effective, unit="month")
    distinct = pc.unique(months)
    labels = pc.take(pc.strftime(distinct, format="%Y-%m"), pc.index_in(months, value_set=distinct))
    early = pc.less(effective, pa.scalar(PARTITION_FLOOR, type=effective.type))
    labels = pc.if_else(early, pa.scalar(BEFORE_FLOOR), labels)
    if kinds is None:
        return labels
    return pc.if_else(pc.is_in(kinds, value_set=pa.array(HISTORY_KINDS)), pa.scalar(HISTORY), labels)


def build_facts(rows: list[Row], batch_id: str) -> BuiltFacts:
    """The facts table of ``rows``; see ``build_fact_table``."""
    return build_fact_table(rows_to_columns(rows), batch_id)


def build_fact_table(columns: dict[str, pa.Array], batch_id: str) -> BuiltFacts:
    """The facts table of a column block (every ``ROW_FIELDS`` name, ``COLUMN_TYPES`` types), rows
    in input order. Rows whose resource has an unreadable date are left out and their resource
    indexes returned, so that the caller quarantines those resources whole."""
    count = len(columns["resource_index"])
    if not count:
        return BuiltFacts(FACTS_SCHEMA.empty_table(), set(), 0)
    try:
        times = {name: columns[name].cast(TIMESTAMP) for name in _TIME_FIELDS}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        unreadable = np.zeros(count, dtype=bool)
        for name in _TIME_FIELDS:
            unreadable |= _unreadable_times(columns[name])
        bad = set(np.asarray(columns["resource_index"])[unreadable].tolist())
        keep = pc.invert(pc.is_in(columns["resource_index"], value_set=pa.array(sorted(bad), pa.int64())))
        built = build_fact_table({name: column.filter(keep) for name, column in columns.items()}, batch_id)
        return BuiltFacts(built.table, bad | built.bad_time_resources, built.duplicates)
    ids = fact_ids(columns)
    keep_first: pa.Array | None = None
    if pc.count_distinct(ids).as_py() != len(ids):
        seen: set[str] = set()
        flags = []
        for fact_id in ids.to_pylist():
            flags.append(fact_id not in seen)
            seen.add(fact_id)
        keep_first = pa.array(flags)
    effective = times["effective_at"]
    # A fact cannot be known before it happened: a lastUpdated/issued earlier than the effective
    # time (clock skew, a scheduled time recorded ahead) would make the fact visible to a
    # point-in-time query before it existed, so both are raised to effective_at.
    known = pc.if_else(pc.less(times["known_at"], effective), effective, times["known_at"])
    issued = times["issued_at"]
    issued = pc.if_else(pc.less(issued, effective), effective, issued) if issued.null_count < count else issued
    arrays = {
        "issued_at": issued,
        "fact_id": ids,
        "month": _months(effective, columns["kind"]),
        "effective_at": effective,
        "effective_end": times["effective_end"],
        "known_at": known,
        "batch_id": pa.array([batch_id] * count, pa.string()),
    }
    table = pa.Table.from_arrays(
        [arrays[f.name] if f.name in arrays else columns[f.name] for f in FACTS_SCHEMA], schema=FACTS_SCHEMA
    )
    if keep_first is None:
        return BuiltFacts(table, set(), 0)
    return BuiltFacts(table.filter(keep_first), set(), count - pc.sum(keep_first).as_py())


#: The most fact rows ``build_fact_rows`` assembles as Python lists (a CDS Hooks prefetch has a
#: few hundred); above it Arrow's fixed cost per column block is small beside its speed per row.
ROW_BUILD_LIMIT = 5_000
#: A facts table as Python lists, one per FACTS_SCHEMA name, times in epoch microseconds.
FactColumns = dict[str, list[Any]]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = 86_400_000_000
_FLOOR_US = (PARTITION_FLOOR - _EPOCH) // timedelta(microseconds=1)
_CARRIED = tuple(name for name in ROW_FIELDS if name not in (*_TIME_FIELDS, "ordinal", "resource_index"))


def build_fact_rows(rows: list[Row], batch_id: str) -> FactColumns | None:
    """The facts ``build_fact_table`` makes of ``rows``, as Python lists, which is cheaper than a
    table for a few rows; ``fact_columns_table`` makes them one. Dates are read and fact ids
    hashed by the same Arrow cast and ``fact_ids`` as there. None when the rows need what only
    ``build_fact_table`` does (a date Arrow cannot read, a fact repeated in the input, a value_num
    that is not a float), or there are none: build those with it."""
    if not rows:
        return None
    fields = dict(zip(ROW_FIELDS, zip(*rows, strict=True), strict=True))
    if any(type(value) is not float for value in fields["value_num"] if value is not None):
        return None
    texts: set[str | None] = set().union(*(fields[name] for name in _TIME_FIELDS))
    texts.discard(None)
    distinct = list(texts)
    try:
        micros = pa.array(distinct, pa.string()).cast(TIMESTAMP).cast(pa.int64()).to_pylist()
    except (pa.ArrowException, TypeError):
        return None
    moment: dict[str | None, int | None] = dict(zip(distinct, micros, strict=True))
    moment[None] = None
    times = {name: list(map(moment.__getitem__, fields[name])) for name in _TIME_FIELDS}
    if None in times["effective_at"]:
        return None
    effective: list[int] = times["effective_at"]  # type: ignore[assignment]
    ids = fact_ids({name: pa.array(fields[name], COLUMN_TYPES[name]) for name in _ID_NAMES}).to_pylist()
    if len(set(ids)) != len(ids):
        return None
    labels: dict[int, str] = {}
    months = [_month_label(kind, at, labels) for kind, at in zip(fields["kind"], effective, strict=True)]
    if None in months:
        return None
    columns: FactColumns = {name: list(fields[name]) for name in _CARRIED}
    columns |= {
        "fact_id": ids,
        "month": months,
        "effective_at": effective,
        "effective_end": times["effective_end"],
        "known_at": _raised_to(effective, times["known_at"]),
        "issued_at": _raised_to(effective, times["issued_at"]),
        "batch_id": [batch_id] * len(rows),
    }
    return {name: columns[name] for name in FACTS_SCHEMA.names}


def _raised_to(effective: list[int], times: list[int | None]) -> list[int | None]:
    """``times`` raised to ``effective`` where earlier, as ``build_fact_table`` raises known and
    issued times (nulls stay null)."""
    return [at if time is not None and time < at else time for at, time in zip(effective, times, strict=True)]


def _month_label(kind: str, effective_us: int, labels: dict[int, str]) -> str | None:
    """``_months`` of one fact (None past year 9999, which only ``_months`` formats)."""
    if kind in HISTORY_KINDS:
        return HISTORY
    if effective_us < _FLOOR_US:
        return BEFORE_FLOOR
    day_us = effective_us - effective_us % _DAY_US
    label = labels.get(day_us)
    if label is None:
        try:
            day = _EPOCH + timedelta(microseconds=day_us)
        except OverflowError:
            return None
        label = labels[day_us] = f"{day.year:04d}-{day.month:02d}"
    return label


def fact_columns_table(columns: FactColumns) -> pa.Table:
    """The facts table (``FACTS_SCHEMA``) of ``build_fact_rows``' columns."""
    return pa.Table.from_arrays([pa.array(columns[f.name], f.type) for f in FACTS_SCHEMA], schema=FACTS_SCHEMA)
