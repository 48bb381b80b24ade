"""FHIR resources -> facts: the one normalization used by bulk ingest and by the online path (a
CDS Hooks prefetch), so both produce the same facts for the same resources.

Every resource read ends in exactly one of three outcomes: ingested (it may add zero or more
facts), skipped (valid FHIR that yields no facts by design, counted by reason), or quarantined
(it breaks a rule; a ``QuarantineRecord`` names the file, line and rule). Hence
``read == ingested + skipped + quarantined``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from vitalops.core.clock import isoformat_utc
from vitalops.fhir.readers import SourceRecord
from vitalops.fhir.resource_types import R4_RESOURCE_TYPES
from vitalops.ingest.extract_common import (
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
from vitalops.ingest.fact_rows import build_facts
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
#: Reader errors that are valid FHIR yielding nothing (skipped), rather than bad input.
_SKIPPED_READER_ERRORS = {"bundle.delete_entry": "bundle entry is a DELETE request"}
_MAX_TYPE_TEXT = 40


@dataclass
class NormalizeResult:
    """The facts of a set of resources, and what happened to the rest."""

    facts: pa.Table
    quarantined: list[QuarantineRecord]
    skipped: dict[str, int]
    read: int = 0
    ingested: int = 0
    duplicates: int = 0  # facts dropped because the same fact came twice in the input
    ingested_per_site: dict[str, int] = field(default_factory=dict)
    added: int = 0  # facts the lake did not hold yet, set once the chunk is committed


def resources_to_facts(
    resources: Iterable[dict[str, Any]],
    *,
    site: str,
    pseudonymizer: Pseudonymizer,
    terminology: Terminology,
    known_at_default: datetime,
    batch_id: str = "online",
) -> NormalizeResult:
    """Normalize FHIR resources (already parsed JSON objects) to facts.

    ``site`` is used for resources without a site tag; ``known_at_default`` for resources without
    meta.lastUpdated. Never raises for bad resources: they are quarantined (``source_file`` is
    ``"<online>"``, ``line`` the position in ``resources``, from 1).
    """
    records = (SourceRecord("<online>", line, resource) for line, resource in enumerate(resources, start=1))
    return records_to_facts(
        records,
        site=site,
        pseudonymizer=pseudonymizer,
        terminology=terminology,
        known_at_default=known_at_default,
        batch_id=batch_id,
    )


def records_to_facts(
    records: Iterable[SourceRecord],
    *,
    site: str,
    pseudonymizer: Pseudonymizer,
    terminology: Terminology,
    known_at_default: datetime,
    batch_id: str,
) -> NormalizeResult:
    """Normalize records from ``vitalops.fhir.readers`` (bad records included) to facts."""
    chunk = ChunkNormalization(Context(site, pseudonymizer, terminology, isoformat_utc(known_at_default)))
    for record in records:
        chunk.add_record(record)
    return chunk.result(batch_id)


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

    def add_record(self, record: SourceRecord) -> None:
        """Normalize one record: its rows join the chunk, or it is counted as skipped or quarantined."""
        index = self.read
        self.read += 1
        ctx, rows = self.ctx, self.rows
        resource = record.resource
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
        # Not a string (a list, an object): unsupported, as a missing type is.
        if not isinstance(resource_type, str) or resource_type not in EXTRACTORS:
            _unsupported(record, resource_type, self.skipped, self.quarantined, ctx)
            return
        extractor = EXTRACTORS[resource_type]
        mark = len(rows)
        try:
            resource_site = extractor(resource, ctx, index, rows)
        except Retracted as outcome:
            del rows[mark:]
            try:
                resource_site = append_retraction(resource, resource_type, outcome.reason, ctx, index, rows)
            except (Rejected, AttributeError, TypeError, KeyError, ValueError, IndexError):
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

    def result(self, batch_id: str) -> NormalizeResult:
        """The facts table of the chunk and its counts; a resource with a date Arrow cannot read is
        quarantined whole."""
        built = build_facts(self.rows, batch_id)
        per_site = self.per_site
        quarantined = self.quarantined
        for index in sorted(built.bad_time_resources):
            file, line, resource_type, resource_site = self.provenance[index]
            per_site[resource_site] -= 1
            quarantined.append(
                QuarantineRecord(
                    file, line, resource_type, None, "date.invalid", "a date cannot be read", resource_site
                )
            )
        return NormalizeResult(
            facts=built.table,
            quarantined=quarantined,
            skipped=dict(self.skipped),
            read=self.read,
            ingested=sum(per_site.values()),
            duplicates=built.duplicates,
            ingested_per_site={name: count for name, count in per_site.items() if count},
        )


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
                f"resourceType {resource_type[:_MAX_TYPE_TEXT]!r} is not a FHIR R4 type",
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
        site = site_of(resource, ctx.default_site)
    except (AttributeError, TypeError):
        site = ctx.default_site
    return QuarantineRecord(record.file, record.line, resource_type, source_id, rule, reason, site)
