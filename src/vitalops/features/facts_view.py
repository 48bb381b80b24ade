"""How the features engine sees facts: the point-in-time validity of each fact, in DuckDB.

This is ``vitalops.lake.facts.pit_facts_sql`` (the one PIT rule) in interval form, so that one
join serves many index times: when each version of a source resource became known and which
version follows which is ``vitalops.lake.versions`` (a first version at ``issued``, a later one at
its own ``meta.lastUpdated``, never before its predecessor; whole-number version ids in numeric
order); a version is current from its known time until the next version's. A fact is visible at T
when ``effective_at <= T``, its own known time (``known_us``: its version's, or later where it was
raised to ``effective_at``) ``<= T`` and its version is current at T. Each fact therefore carries
``[version_us, superseded_us)`` in epoch microseconds, and one integer comparison per fact applies
the superseding rule. ``tests/features/test_pit_rule.py`` checks that
this equals ``pit_view`` at random moments.

Encounter facts follow the ingest conventions: ``kind = 'encounter'``, ``value_code`` the
HL7 v3 ActCode class (``IMP``, ``EMER``, ``AMB``), ``encounter_key`` the encounter's own key,
``effective_at``/``effective_end`` its period, concept ``encounter``; ICU stays are further
encounter facts with concept ``icu_stay`` (see ``vitalops.ingest.extract_resources``).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from vitalops.lake.schema import with_all_columns
from vitalops.lake.versions import fact_known_sql, version_intervals_sql

#: Statuses whose facts never count (a record entered by mistake).
EXCLUDED_STATUSES = ("entered-in-error",)
ICU_CONCEPT = "icu_stay"
#: The concept of the encounter fact itself (class in value_code, period in effective_at/end).
ENCOUNTER_CONCEPT = "encounter"
US_PER_HOUR = 3_600_000_000.0
#: Average Gregorian year, the unit of ``age``.
US_PER_YEAR = 365.25 * 24 * US_PER_HOUR

#: Columns of FACTS_SCHEMA the engine reads; callers may project facts to these.
ENGINE_COLUMNS = (
    "fact_id", "patient_key", "site", "kind", "concept", "value_num", "value_code", "status",
    "encounter_key", "effective_at", "effective_end", "known_at", "source_type", "source_id",
    "source_version", "issued_at",
)


def register_facts(con: duckdb.DuckDBPyConnection, facts: pa.Table, name: str = "f") -> None:
    """Register ``facts`` as view ``name`` with integer times and each fact's validity interval."""
    con.register("facts_in", with_all_columns(facts).select(list(ENGINE_COLUMNS)))
    excluded = ", ".join(f"'{status}'" for status in EXCLUDED_STATUSES)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {name} AS
        WITH v AS ({version_intervals_sql("facts_in")})
        SELECT fi.fact_id, fi.patient_key, fi.site, fi.kind, fi.concept, fi.value_num, fi.value_code,
               fi.status, fi.encounter_key, fi.source_id,
               epoch_us(fi.effective_at) AS eff_us,
               epoch_us(fi.effective_end) AS end_us,
               epoch_us({fact_known_sql("fi", "v")}) AS known_us,
               epoch_us(v.version_known_at) AS version_us,
               coalesce(epoch_us(v.superseded_at), 9223372036854775807) AS superseded_us
        FROM facts_in fi JOIN v USING (source_type, source_id, source_version)
        WHERE fi.status IS NULL OR fi.status NOT IN ({excluded})
        """
    )
    con.unregister("facts_in")


def visible_at(fact: str, moment: str) -> str:
    """SQL predicate: fact alias ``fact`` is visible at the epoch-microsecond expression ``moment``."""
    return (
        f"{fact}.eff_us <= {moment} AND {fact}.known_us <= {moment} AND {fact}.superseded_us > {moment}"
    )


def known_by(fact: str, moment: str) -> str:
    """SQL predicate: the version of ``fact`` is the one current at ``moment`` (any effective time)."""
    return f"{fact}.known_us <= {moment} AND {fact}.superseded_us > {moment}"
