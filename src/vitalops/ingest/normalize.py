"""FHIR resources -> facts: the one normalization used by bulk ingest and by the online path (a
CDS Hooks prefetch), so both produce the same facts for the same resources.

Every resource read ends in exactly one of three outcomes: ingested (it may add zero or more
facts), skipped (valid FHIR that yields no facts by design, counted by reason), or quarantined
(it breaks a rule; a ``QuarantineRecord`` names the file, line and rule). Hence
``read == ingested + skipped + quarantined``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vitalops.core.clock import isoformat_utc
from vitalops.fhir.readers import SourceRecord
from vitalops.fhir.resource_types import R4_RESOURCE_TYPES
from vitalops.ingest.extract_common import (
    SITE_UNREGISTERED,
    Context,
    Rejected,
    Retracted,
    Row,
    Skipped,
    append_retraction,
    site_of,
)
from vitalops.ingest.extract_observation import observation_facts
from vitalops.ingest.extract_resources import (
    Extractor,
    condition_facts,
    encounter_facts,
    medication_administration_facts,
    medication_request_facts,
    patient_facts,
    procedure_facts,
)
from vitalops.ingest.fact_rows import (
    COLUMN_TYPES,
    ROW_BUILD_LIMIT,
    ROW_FIELDS,
    FactColumns,
    build_fact_rows,
    build_fact_table,
    fact_columns_table,
    rows_to_columns,
)
from vitalops.ingest.medications import ORDER_TYPES
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.lake.quarantine import QuarantineRecord

if TYPE_CHECKING:
    from vitalops.terminology import Terminology

EXTRACTORS: dict[str, Extractor] = {
    "Observation": observation_facts,
    "Patient": patient_facts,
    "Encounter": encounter_facts,
    "Condition": condition_facts,
    "MedicationRequest": medication_request_facts,
    "MedicationAdministration": medication_administration_facts,
    "Procedure": procedure_facts,
}
#: The skip reason of a Medication resource: indexed for the orders that reference it, no facts of its own.
MEDICATION_READ = "Medication (resolves medicationReference; no facts of its own)"
#: Reader errors that are valid FHIR yielding nothing (skipped), rather than bad input.
_SKIPPED_READER_ERRORS = {"bundle.delete_entry": "bundle entry is a DELETE request"}
_TEXT_POSITIONS = tuple(i for i, name in enumerate(ROW_FIELDS) if COLUMN_TYPES[name] == pa.string())


@dataclass
class NormalizeResult:
    """The facts of a set of resources, and what happened to the rest. A few resources' facts
    are assembled as Python lists (``fact_columns``, times in epoch microseconds), and made a
    table only when ``facts`` is read."""

    quarantined: list[QuarantineRecord]
    skipped: dict[str, int]
    read: int = 0
    ingested: int = 0
    duplicates: int = 0  # facts dropped because the same fact came twice in the input
    ingested_per_site: dict[str, int] = field(default_factory=dict)
    added: int = 0  # facts the lake did not hold yet, set once the chunk is committed
    fact_columns: FactColumns | None = None
    table: pa.Table | None = field(default=None, repr=False)

    @property
    def facts(self) -> pa.Table:
        """The facts table (``FACTS_SCHEMA``)."""
        if self.table is None:
            assert self.fact_columns is not None
            self.table = fact_columns_table(self.fact_columns)
        return self.table

    @property
    def facts_for_kernel(self) -> pa.Table | FactColumns:
        """The Python columns when the facts were assembled row by row, else the table: what
        ``vitalops.features.online.vector_from_facts`` reads without converting them."""
        return self.fact_columns if self.fact_columns is not None else self.facts

    def patient_keys(self) -> list[str]:
        """The distinct patient keys of the facts, in order of first appearance."""
        if self.fact_columns is not None:
            return list(dict.fromkeys(self.fact_columns["patient_key"]))
        return pc.unique(self.facts.column("patient_key")).to_pylist()  # type: ignore[no-any-return]


def resources_to_facts(
    resources: Iterable[dict[str, Any]],
    *,
    site: str,
    pseudonymizer: Pseudonymizer,
    terminology: Terminology,
    known_at_default: datetime,
    batch_id: str = "online",
    sites: Mapping[str, str] | None = None,
) -> NormalizeResult:
    """Normalize FHIR resources (already parsed JSON objects) to facts.

    ``sites`` maps each registered site tag value to its site code: a tagged resource takes the
    code its tag maps to, and one whose tag no registered site claims is quarantined. Without
    ``sites`` every resource is of ``site`` (a request for one site the caller has checked) and
    site tags are not read. ``site`` is also the site of untagged resources; ``known_at_default``
    is used for resources without meta.lastUpdated. Never raises for bad resources: they are
    quarantined (``source_file`` is ``"<online>"``, ``line`` the position in ``resources``, from 1).
    """
    records = (SourceRecord("<online>", line, resource) for line, resource in enumerate(resources, start=1))
    return records_to_facts(
        records,
        site=site,
        pseudonymizer=pseudonymizer,
        terminology=terminology,
        known_at_default=known_at_default,
        batch_id=batch_id,
        sites=sites,
    )


def records_to_facts(
    records: Iterable[SourceRecord],
    *,
    site: str,
    pseudonymizer: Pseudonymizer,
    terminology: Terminology,
    known_at_default: datetime,
    batch_id: str,
    sites: Mapping[str, str] | None = None,
) -> NormalizeResult:
    """Normalize records from ``vitalops.fhir.readers`` (bad records included) to facts; ``site``
    and ``sites`` as for ``resources_to_facts``."""
    chunk = ChunkNormalization(Context(site, pseudonymizer, terminology, isoformat_utc(known_at_default), sites))
    medications = chunk.ctx.medications
    medications.hold_unresolved()  # an order may come before the Medication it names
    for record in records:
        chunk.add_record(record)
    for record in medications.release():
        chunk.add_record(record)
    return chunk.result(batch_id)


@dataclass
class BlockProvenance:
    """Where the resources of a column block came from: resource ``indexes[i]`` (ascending) is
    line ``lines[i]`` of ``file``, an Observation of site ``sites[i]``."""

    file: str
    indexes: np.ndarray
    lines: np.ndarray
    sites: pa.Array

    def per_site(self) -> dict[str, int]:
        counts = pc.value_counts(self.sites)
        return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))

    def find(self, index: int) -> tuple[str, int, str, str] | None:
        position = int(np.searchsorted(self.indexes, index))
        if position < len(self.indexes) and self.indexes[position] == index:
            return self.file, int(self.lines[position]), "Observation", str(self.sites[position].as_py())
        return None


class ChunkNormalization:
    """The facts and outcomes of one chunk of records, built up one record at a time.

    ``add_record`` is the per-resource path; a faster reader may append rows for resources it has
    proved it handles exactly as ``add_record`` would (``add_fast``), and hand the rest here.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rows: list[Row] = []
        self.quarantined: list[QuarantineRecord] = []
        self.skipped: Counter[str] = Counter()
        # resource index -> file, line, type, site: to quarantine a resource whose date Arrow cannot read
        self.provenance: dict[int, tuple[str, int, str, str]] = {}
        self.per_site: Counter[str] = Counter()
        self.read = 0
        # Facts added a column block at a time (``add_columns``), with the provenance of their resources.
        self.blocks: list[dict[str, pa.Array]] = []
        self.block_provenance: list[BlockProvenance] = []

    def add_record(self, record: SourceRecord) -> None:
        """Normalize one record: its rows join the chunk, or it is counted as skipped or quarantined."""
        ctx, rows = self.ctx, self.rows
        resource = record.resource
        kind = resource.get("resourceType") if resource is not None else None
        if type(kind) is str and kind in ORDER_TYPES and ctx.medications.hold(record):
            return  # read, and counted, once the batch's Medications are all known
        index = self.read
        self.read += 1
        if resource is None:
            error = record.error or "input.unreadable"
            if error in _SKIPPED_READER_ERRORS:
                self.skipped[_SKIPPED_READER_ERRORS[error]] += 1
            else:
                self.quarantined.append(
                    QuarantineRecord(record.file, record.line, None, None, error, record.detail or error)
                )
            return
        resource_type = resource.get("resourceType")
        if resource_type == "Medication":
            ctx.medications.add(resource)
            self.skipped[MEDICATION_READ] += 1
            return
        # Not a string (a list, an object): unsupported, as a missing type is.
        if not isinstance(resource_type, str) or resource_type not in EXTRACTORS:
            _unsupported(record, resource_type, self.skipped, self.quarantined, ctx)
            return
        extractor = EXTRACTORS[resource_type]
        mark = len(rows)
        try:
            resource_site = extractor(resource, ctx, index, rows)
            _check_text_fields(rows, mark)
        except Retracted as outcome:
            del rows[mark:]
            try:
                resource_site = append_retraction(resource, resource_type, outcome.reason, ctx, index, rows)
            except Rejected as rejected:
                del rows[mark:]
                if rejected.rule == SITE_UNREGISTERED:
                    self.quarantined.append(_quarantine(record, resource_type, rejected.rule, rejected.reason, ctx))
                else:
                    self.skipped[outcome.reason] += 1  # nothing to retract without a patient or an id
                return
            except (AttributeError, TypeError, KeyError, ValueError, IndexError):
                del rows[mark:]
                self.skipped[outcome.reason] += 1  # nothing to retract without a patient or an id
                return
        except Skipped as outcome:
            del rows[mark:]
            self.skipped[outcome.reason] += 1
            return
        except Rejected as outcome:
            del rows[mark:]
            self.quarantined.append(_quarantine(record, resource_type, outcome.rule, outcome.reason, ctx))
            return
        except (AttributeError, TypeError, KeyError, ValueError, IndexError):
            # An element of the wrong JSON shape (a string where an object belongs, ...).
            del rows[mark:]
            self.quarantined.append(
                _quarantine(record, resource_type, "resource.malformed", "an element has the wrong JSON type", ctx)
            )
            return
        self.provenance[index] = (record.file, record.line, resource_type, resource_site)
        self.per_site[resource_site] += 1

    def add_columns(self, columns: dict[str, pa.Array], provenance: BlockProvenance) -> None:
        """Add the facts of resources a faster reader has normalized a column block at a time, as
        ``add_record`` would have (``ROW_FIELDS`` columns; ``resource_index`` values taken from
        ``self.read`` onwards, which the caller has advanced). Their sites count as ingested."""
        self.blocks.append(columns)
        self.block_provenance.append(provenance)
        self.per_site.update(provenance.per_site())

    def _columns(self) -> dict[str, pa.Array]:
        """Every fact row of the chunk as one column block, in resource order (then ordinal)."""
        parts = [*self.blocks, rows_to_columns(self.rows)] if self.rows else list(self.blocks)
        if not parts:
            return rows_to_columns([])
        if len(parts) == 1:
            return parts[0]
        table = pa.Table.from_pydict({name: pa.concat_arrays([p[name] for p in parts]) for name in ROW_FIELDS})
        order = pc.sort_indices(table, sort_keys=[("resource_index", "ascending"), ("ordinal", "ascending")])
        table = table.take(order)
        return {name: table[name].combine_chunks() for name in ROW_FIELDS}

    def _provenance_of(self, index: int) -> tuple[str, int, str, str]:
        found = self.provenance.get(index)
        if found is not None:
            return found
        for block in self.block_provenance:
            found = block.find(index)
            if found is not None:
                return found
        raise KeyError(index)  # pragma: no cover - every fact row comes from a recorded resource

    def result(self, batch_id: str) -> NormalizeResult:
        """The facts of the chunk and its counts; a resource with a date Arrow cannot read is
        quarantined whole. A chunk of a few rows and no column blocks is assembled row by row
        (``build_fact_rows``) unless it needs the column block's handling."""
        if not self.blocks and len(self.rows) <= ROW_BUILD_LIMIT:
            columns = build_fact_rows(self.rows, batch_id)
            if columns is not None:
                return NormalizeResult(
                    quarantined=self.quarantined,
                    skipped=dict(self.skipped),
                    read=self.read,
                    ingested=sum(self.per_site.values()),
                    ingested_per_site={name: count for name, count in self.per_site.items() if count},
                    fact_columns=columns,
                )
        built = build_fact_table(self._columns(), batch_id)
        per_site = self.per_site
        quarantined = self.quarantined
        for index in sorted(built.bad_time_resources):
            file, line, resource_type, resource_site = self._provenance_of(index)
            per_site[resource_site] -= 1
            quarantined.append(
                QuarantineRecord(
                    file, line, resource_type, None, "date.invalid", "a date cannot be read", resource_site
                )
            )
        return NormalizeResult(
            table=built.table,
            quarantined=quarantined,
            skipped=dict(self.skipped),
            read=self.read,
            ingested=sum(per_site.values()),
            duplicates=built.duplicates,
            ingested_per_site={name: count for name, count in per_site.items() if count},
        )


def _check_text_fields(rows: list[Row], mark: int) -> None:
    """Raise TypeError when a text field of the rows from ``mark`` on is not text (a ``status`` or
    a coding's ``code`` given as a number or an object): the resource is malformed."""
    for row in rows[mark:]:
        for position in _TEXT_POSITIONS:
            value = row[position]
            if value is not None and type(value) is not str:
                raise TypeError(ROW_FIELDS[position])


def _unsupported(
    record: SourceRecord,
    resource_type: Any,
    skipped: Counter[str],
    quarantined: list[QuarantineRecord],
    ctx: Context,
) -> None:
    if not resource_type or type(resource_type) is not str:
        quarantined.append(_quarantine(record, None, "resource.no_type", "the object has no resourceType", ctx))
    elif resource_type in R4_RESOURCE_TYPES:
        skipped[f"unsupported resource type {resource_type}"] += 1
    else:
        quarantined.append(
            _quarantine(
                record,
                None,
                "resource.unknown_type",
                "resourceType: not a FHIR R4 resource type",
                ctx,
            )
        )


def _quarantine(
    record: SourceRecord, resource_type: str | None, rule: str, reason: str, ctx: Context
) -> QuarantineRecord:
    resource = record.resource or {}
    raw_id = resource.get("id")
    source_id = (
        ctx.pseudonyms.resource_key(resource_type, raw_id)
        if resource_type and isinstance(raw_id, str) and raw_id
        else None
    )
    try:
        site = site_of(resource, ctx)
    except (Rejected, AttributeError, TypeError):  # an unregistered or malformed site tag
        site = ctx.default_site
    return QuarantineRecord(record.file, record.line, resource_type, source_id, rule, reason, site)
