"""The schemas of the lake's Delta tables. One place, so that ingest, features, batch and
monitoring agree on every column.

Facts are bitemporal: ``effective_at`` is when it happened; ``known_at`` when this version of the
source resource was made available (its ``meta.lastUpdated``, else the ingest time) and
``issued_at`` the resource's ``issued`` (Observations), both raised to ``effective_at`` when
earlier. ``value_num`` is in ``unit``, the concept's canonical unit; ``source_unit`` is the unit
the value was sent in, before conversion (data quality reads it: ``quality.unit_mix``).
``effective_basis`` is null when ``effective_at`` is when the event happened (an onset, an
effective or performed time), ``recorded`` when it is only when the record was made.
When the platform could have known a fact follows from these over all versions of its resource
(``vitalops.lake.versions``: a first version at ``issued``, else ``known_at``; a later one
at its own ``known_at``, never before the version it follows).
Facts are append-only; a newer version supersedes the older version's facts from the newer version's known time on.
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

#: Kinds of fact. ``outcome`` facts (death) are never features; labels read them. A ``retraction``
#: fact (no concept) is the newest version of a resource that was entered in error, cancelled,
#: refuted or not done: it only supersedes that resource's earlier facts.
FACT_KINDS = (
    "demographic",
    "encounter",
    "vital",
    "lab",
    "observation",
    "condition",
    "medication",
    "procedure",
    "outcome",
    "retraction",
)

FACTS_SCHEMA = pa.schema(
    [
        pa.field("fact_id", pa.string(), nullable=False),  # sha256 of source + version + ordinal + content
        pa.field("patient_key", pa.string(), nullable=False),  # HMAC-SHA256 pseudonym, hex
        pa.field("site", pa.string(), nullable=False),
        pa.field("month", pa.string(), nullable=False),  # partition: YYYY-MM of effective_at ("history", "before-2000")
        pa.field("kind", pa.string(), nullable=False),
        pa.field("concept", pa.string()),  # None when the code is not mapped to a concept
        pa.field("code_system", pa.string()),
        pa.field("code", pa.string()),
        pa.field("value_num", pa.float64()),  # in ``unit``, the concept's canonical UCUM unit
        pa.field("value_code", pa.string()),
        pa.field("unit", pa.string()),
        pa.field("status", pa.string()),
        pa.field("encounter_key", pa.string()),  # HMAC pseudonym of the encounter, when referenced
        pa.field("effective_at", TIMESTAMP, nullable=False),
        pa.field("effective_end", TIMESTAMP),
        pa.field("known_at", TIMESTAMP, nullable=False),
        pa.field("source_type", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),  # HMAC pseudonym of the resource id
        pa.field("source_version", pa.string(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        # Last, and nullable, so that lakes written before them existed stay readable (as null).
        pa.field("issued_at", TIMESTAMP),
        # The unit the value arrived in (a Quantity's code, else its unit), in its UCUM spelling;
        # null for a coded value, a unit that is free text or an annotation, and older lakes.
        pa.field("source_unit", pa.string()),
        # What effective_at was taken from when it is not the event's own time: "recorded" for a
        # Condition dated by its recordedDate (no onset[x]); null otherwise, and in older lakes.
        pa.field("effective_basis", pa.string()),
    ]
)
FACTS_PARTITIONS = ["site", "month"]
#: ``effective_basis`` of a fact whose time is when its record was made (a Condition's
#: ``recordedDate``, taken when it has no onset date), not when the event happened.
RECORDED = "recorded"


_NULLABLE_FACT_COLUMNS = tuple((column.name, column) for column in FACTS_SCHEMA if column.nullable)


def with_all_columns(facts: pa.Table) -> pa.Table:
    """``facts`` with a null column for each nullable FACTS_SCHEMA column it lacks (a table in the
    form from before ``issued_at``, ``source_unit`` or ``effective_basis`` existed)."""
    names = set(facts.column_names)
    for name, column in _NULLABLE_FACT_COLUMNS:
        if name not in names:
            facts = facts.append_column(column, pa.nulls(facts.num_rows, column.type))
    return facts


QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),  # sha256 of file, line, resource and rule
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("site", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("line", pa.int64()),  # 1-based line in NDJSON, entry index in a Bundle
        pa.field("resource_type", pa.string()),
        pa.field("source_id", pa.string()),  # pseudonymized resource id, never the raw one
        pa.field("rule", pa.string(), nullable=False),  # stable id, e.g. ``unit.unconvertible``
        pa.field("reason", pa.string(), nullable=False),  # plain words, no PHI
        pa.field("quarantined_at", TIMESTAMP, nullable=False),
    ]
)

#: Columns every training set has, before its feature columns.
DATASET_KEY_COLUMNS = ("patient_key", "site", "encounter_key", "index_time")
DATASET_LABEL_COLUMNS = ("label", "label_known_at")
#: Subgroup attributes for validation and fairness, as of the index time; never model inputs
#: unless a feature with the same meaning is declared.
DATASET_ATTRIBUTE_COLUMNS = ("attr_sex", "attr_age", "attr_race", "attr_ethnicity")
