"""The online store: each patient's recent facts, by patient key, for serving in milliseconds.

Serving by patient key cannot open the Delta facts table per request (about 200 ms). Ingest
writes every chunk's facts here too, after the chunk's lake commit, as upserts keyed by
``(patient_key, fact_id)``: a crash and a rerun write the same facts over themselves, so the store
ends equal to one clean run. ``vitalops online rebuild`` derives it from the lake for a lake that
predates it.

What is kept (never a fact the kernel reads for a vector at "now"):

* every fact of kinds whose features have no bounded lookback: demographics (age, sex),
  encounters (the index encounter, length of stay, utilization), conditions ("ever") and
  medications ("active": an order may start long ago);
* of the other kinds (vitals, labs, observations, procedures, outcomes, retractions), the
  resources with a fact whose ``effective_at`` or ``effective_end`` is at or after the patient's
  horizon: the newest ``known_at`` among the patient's facts minus the retention, the longest
  measurement window of all registered definition sets (``None``, nothing registered yet:
  everything is kept). A vector at T reads facts with ``T - W < effective_at`` and ``known_at <= T``,
  so every T at or after the patient's newest known time is covered;
* all versions of a resource together, so known times and superseding follow
  ``vitalops.lake.versions`` exactly as over the lake.

The horizon depends only on the patient's facts, never on the wall clock, so writing is
idempotent and a rerun ends where a clean run does. Registering a definition set with a longer
window than the store was written with needs ``vitalops online rebuild`` (the store records its
retention; ``OnlineStore.covers`` tells). A vector at a moment before the patient's horizon can miss facts
that aged out: serving asks for "now".

Facts are kept with the engine's columns (``ENGINE_COLUMNS``, times as epoch microseconds) as one
compact JSON row per fact. Backends: ``sqlite`` (a file in ``VITALOPS_HOME``, the default) and
``redis`` (a hash per patient, field = fact id), behind ``OnlineStore`` and ``STORES``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from vitalops.db import Database
from vitalops.errors import VitalOpsError
from vitalops.features.definitions import DatasetSpec, MeasurementFeature, duration_us
from vitalops.features.facts_view import ENGINE_COLUMNS
from vitalops.lake.schema import FACTS_SCHEMA, with_all_columns

#: Kinds kept whatever their age: their features look back without bound (see the module docstring).
KEPT_KINDS = frozenset({"demographic", "encounter", "condition", "medication"})
_TIMES = frozenset({"effective_at", "effective_end", "known_at", "issued_at"})
#: The row stored per fact: the engine's columns without the two that key it.
ROW_COLUMNS = tuple(c for c in ENGINE_COLUMNS if c not in ("fact_id", "patient_key"))
_ROW = {name: position for position, name in enumerate(ROW_COLUMNS)}
_KIND, _EFF, _END, _KNOWN = _ROW["kind"], _ROW["effective_at"], _ROW["effective_end"], _ROW["known_at"]
_SOURCE_TYPE, _SOURCE_ID = _ROW["source_type"], _ROW["source_id"]
_VALUE_NUM = _ROW["value_num"]
ENGINE_SCHEMA = pa.schema([FACTS_SCHEMA.field(name) for name in ENGINE_COLUMNS])
#: Meta key holding the retention the store was written with ("all", or microseconds as text).
RETENTION_KEY = "retention_us"
#: Patients per read of existing facts while writing: bounds memory and round trips.
_PATIENTS_PER_READ = 500

Rows = dict[str, bytes]  # fact_id -> encoded row


def longest_lookback_us(specs: Iterable[DatasetSpec]) -> int | None:
    """The longest measurement window among ``specs`` in microseconds; None when there are no specs
    (then the store keeps everything)."""
    longest: int | None = None
    for spec in specs:
        windows = [duration_us(f.window) for f in spec.features if isinstance(f, MeasurementFeature)]
        longest = max([longest or 0, *windows])
    return longest


def registered_lookback_us(database: Database) -> int | None:
    """The longest measurement window of every definition set registered in ``database`` (what the
    store keeps); None, keep everything, when none is registered or one cannot be read back."""
    from vitalops.db.tables.serving import DefinitionSetRow
    from vitalops.features.definition_sets import get_definitions

    with database.read_session() as session:
        versions = list(session.scalars(select(DefinitionSetRow.version)))
        if not versions:
            return None
        try:
            specs = [get_definitions(session, version) for version in versions]
        except VitalOpsError:
            return None  # safe: a set that cannot be read back may need anything
    return longest_lookback_us(specs)


def encode_rows(facts: pa.Table) -> Iterator[tuple[str, str, bytes]]:
    """``(patient_key, fact_id, row)`` for each fact of a FACTS_SCHEMA table (at least ENGINE_COLUMNS)."""
    keys, fact_ids, values = _row_values(facts)
    return zip(keys, fact_ids, _dumps_each(values), strict=True)


def _dumps_each(values: Sequence[tuple[Any, ...]]) -> list[bytes]:
    """``orjson.dumps`` of each row of ``values``, cut from one ``orjson.dumps`` of them all (a
    third of the time): rows of scalars are ``[...]`` joined by ``,``, so ``],[`` is a boundary
    wherever no string holds it (when one does, there are more pieces than rows: dumped one by one)."""
    if not values:
        return []
    pieces = orjson.dumps(values)[2:-2].split(b"],[")
    if len(pieces) == len(values):
        return [b"[" + piece + b"]" for piece in pieces]
    dumps = orjson.dumps
    return [dumps(row) for row in values]


def _row_values(facts: pa.Table) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
    """The patient keys, fact ids and ROW_COLUMNS values (what a row encodes) of ``facts``."""
    facts = with_all_columns(facts)
    columns = []
    for name in ROW_COLUMNS:
        column = facts.column(name)
        columns.append((column.cast(pa.int64()) if name in _TIMES else column).to_pylist())
    values = columns[_VALUE_NUM]
    # JSON has no NaN or infinity: kept as text so the row reads back exactly
    if not all(v is None or math.isfinite(v) for v in values):
        columns[_VALUE_NUM] = [v if v is None or math.isfinite(v) else repr(v) for v in values]
    rows = list(zip(*columns, strict=True))
    return facts.column("patient_key").to_pylist(), facts.column("fact_id").to_pylist(), rows


def decode_rows(patient_key: str, rows: Mapping[str, bytes]) -> pa.Table:
    """The facts of ``rows`` (fact id -> row) as an ENGINE_COLUMNS table, ordered by fact id."""
    fact_ids = sorted(rows)
    decoded = [orjson.loads(rows[fact_id]) for fact_id in fact_ids]
    columns: dict[str, Any] = {"fact_id": fact_ids, "patient_key": [patient_key] * len(fact_ids)}
    for name, position in _ROW.items():
        columns[name] = [row[position] for row in decoded]
    columns["value_num"] = [float(v) if isinstance(v, str) else v for v in columns["value_num"]]
    arrays = [pa.array(columns[field.name], field.type) for field in ENGINE_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=ENGINE_SCHEMA)


def retained(rows: Mapping[str, Sequence[Any]], retention_us: int | None) -> set[str]:
    """The fact ids of one patient's decoded ``rows`` (fact id -> row) that the store keeps."""
    if retention_us is None or not rows:
        return set(rows)
    horizon = max(row[_KNOWN] for row in rows.values()) - retention_us
    live: set[tuple[str, str]] = set()
    for row in rows.values():
        end = row[_END]
        if row[_KIND] in KEPT_KINDS or row[_EFF] >= horizon or (end is not None and end >= horizon):
            live.add((row[_SOURCE_TYPE], row[_SOURCE_ID]))
    return {fact_id for fact_id, row in rows.items() if (row[_SOURCE_TYPE], row[_SOURCE_ID]) in live}


class OnlineStore(ABC):
    """Patients' recent facts by patient key. Backends implement the five primitives below; writing
    and retention are the same for all."""

    @abstractmethod
    def rows(self, patient_keys: Sequence[str]) -> dict[str, Rows]:
        """The stored rows of each of ``patient_keys`` that has any."""

    @abstractmethod
    def apply(self, upserts: Mapping[str, Rows], deletes: Mapping[str, Sequence[str]]) -> None:
        """Write ``upserts`` (patient -> fact id -> row) over what is there and remove ``deletes``,
        atomically where the backend can."""

    @abstractmethod
    def get_meta(self, name: str) -> Any:
        """A value the store keeps about itself (None when unset)."""

    @abstractmethod
    def set_meta(self, name: str, value: Any) -> None: ...

    @abstractmethod
    def clear(self) -> None:
        """Remove every patient's facts and the meta values."""

    @abstractmethod
    def patients(self) -> int:
        """How many patients have facts here."""

    def close(self) -> None:  # noqa: B027 - a backend without connections has nothing to close
        """Release connections."""

    def facts_for(self, patient_key: str) -> pa.Table:
        """The patient's stored facts (ENGINE_COLUMNS; empty when none), in well under 5 ms."""
        return decode_rows(patient_key, self.rows([patient_key]).get(patient_key, {}))

    def retention(self) -> tuple[bool, int | None]:
        """``(written, retention_us)``: whether ingest or a rebuild has written the store, and the
        retention it was written with (None: everything kept)."""
        value = self.get_meta(RETENTION_KEY)
        if value is None:
            return False, None
        return True, None if value == "all" else int(value)

    def populated(self) -> bool:
        """Whether ingest or a rebuild has written this store."""
        return self.retention()[0]

    def covers(self, retention_us: int | None) -> bool:
        """Whether the store keeps every fact that definitions needing ``retention_us`` read at "now"
        (None: everything)."""
        written, kept = self.retention()
        return written and (kept is None or (retention_us is not None and kept >= retention_us))

    def write(self, facts: pa.Table, retention_us: int | None, *, fresh: bool = False) -> int:
        """Upsert ``facts`` (FACTS_SCHEMA or ENGINE_COLUMNS) keyed by ``(patient_key, fact_id)`` and
        drop what falls out of each touched patient's retention; returns the facts kept of ``facts``.
        ``fresh`` says the store holds nothing of these patients yet (a rebuild), which saves reading.

        Idempotent: writing the same facts again leaves the store as it was.
        """
        keys, fact_ids, values = _row_values(facts)
        by_patient: dict[str, Rows] = {}
        for key, fact_id, row in zip(keys, fact_ids, _dumps_each(values), strict=True):
            if key in by_patient:
                by_patient[key][fact_id] = row
            else:
                by_patient[key] = {fact_id: row}
        if retention_us is None:  # everything is kept: nothing to read, one transaction
            self.apply(by_patient, {})
            self.record(retention_us)
            return sum(len(rows) for rows in by_patient.values())
        decoded: dict[str, dict[str, Sequence[Any]]] = {}
        for key, fact_id, row_values in zip(keys, fact_ids, values, strict=True):
            decoded.setdefault(key, {})[fact_id] = row_values
        kept = 0
        patients = sorted(by_patient)
        for start in range(0, len(patients), _PATIENTS_PER_READ):
            group = patients[start:start + _PATIENTS_PER_READ]
            existing = {} if fresh else self.rows(group)
            upserts: dict[str, Rows] = {}
            deletes: dict[str, list[str]] = {}
            for key in group:
                new, old = by_patient[key], existing.get(key, {})
                merged = {fact_id: orjson.loads(row) for fact_id, row in old.items() if fact_id not in new}
                merged.update(decoded[key])  # the new rows, as they were encoded
                keep = retained(merged, retention_us)
                upserts[key] = {fact_id: row for fact_id, row in new.items() if fact_id in keep}
                deletes[key] = [fact_id for fact_id in old if fact_id not in keep]
                kept += len(upserts[key])
            self.apply(upserts, deletes)
        self.record(retention_us)
        return kept

    def record(self, retention_us: int | None) -> None:
        """Note the retention the store is written with (once per change)."""
        value = "all" if retention_us is None else str(retention_us)
        if self.get_meta(RETENTION_KEY) != value:
            self.set_meta(RETENTION_KEY, value)


def _sqlite(url: str) -> OnlineStore:
    from vitalops.features.online_backends import SQLiteOnlineStore

    return SQLiteOnlineStore(url.removeprefix("sqlite:///"))


def _redis(url: str) -> OnlineStore:
    from vitalops.features.online_backends import RedisOnlineStore

    return RedisOnlineStore(url)


#: URL scheme -> backend.
STORES: dict[str, Callable[[str], OnlineStore]] = {"sqlite": _sqlite, "redis": _redis, "rediss": _redis}


def open_online_store(url: str) -> OnlineStore:
    """The online store at ``url`` (``sqlite:///path`` or ``redis://host:port/db``).

    Raises InvalidInput for another scheme, MissingExtra when Redis is named but the ``redis``
    extra is not installed.
    """
    from vitalops.errors import InvalidInput

    scheme = url.split("://", 1)[0]
    if scheme not in STORES:
        raise InvalidInput(f"the online store URL must start with one of {', '.join(s + '://' for s in STORES)}",
                           details={"field": "VITALOPS_ONLINE_STORE_URL"})
    return STORES[scheme](url)


def rebuild(store: OnlineStore, facts: pa.Table, retention_us: int | None, *, batch_facts: int = 200_000,
            progress: Callable[[int], None] | None = None) -> int:
    """Replace the store's contents with what it keeps of ``facts`` (all facts, e.g. the lake's);
    returns the facts kept. Patients are written whole, in batches of about ``batch_facts``
    facts, so every resource's versions are judged together. Running it twice gives the same store."""
    store.clear()
    facts = facts.sort_by([("patient_key", "ascending")])
    keys = facts.column("patient_key")
    kept, start = 0, 0
    while start < facts.num_rows:
        stop = min(start + batch_facts, facts.num_rows)
        if stop < facts.num_rows:  # extend to the end of the last patient in the batch
            last = keys[stop - 1].as_py()
            stop = start + int(pc.sum(pc.less_equal(keys.slice(start), last)).as_py())
        kept += store.write(facts.slice(start, stop - start), retention_us, fresh=True)
        if progress is not None:
            progress(stop - start)
        start = stop
    store.record(retention_us)
    return kept
