"""Cohorts: the index rows (patient, encounter, index time) at which predictions are made.

The cohort is the sampling design, so it reads encounters as finally known (the facts' latest
view at ``as_of``): an inpatient stay scored every 4 hours runs from admission + 4 h to its
discharge even though, at each index time, the features only see the stay as it was known then.
Stays still open at ``as_of`` are scored up to ``as_of``; discharge cohorts need a discharge.

Exclusions (see ``CohortDef``): an index time inside an ICU stay as known at that time is
dropped (``exclude_active``), so the deterioration model never scores a patient already in the
ICU; a stay's rows end at its first deterioration event (``stop_after``); a discharge is dropped
when it ended in death or another listed disposition (``exclude_dispositions``), or when it is a
move between encounters of one hospital stay (``exclude_transfers``).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from vitalops.features.definitions import CohortDef, CriteriaDef, duration_us
from vitalops.features.engine import DEMOGRAPHIC_CONCEPTS, INDEX_SCHEMA
from vitalops.features.facts_view import ENCOUNTER_CONCEPT, US_PER_YEAR, known_by, visible_at

#: Fact kinds the cohort reads (outcomes for ``stop_after``).
COHORT_KINDS = ("encounter", "demographic", "outcome")
#: The encounter fact carrying a discharge disposition code in ``value_code`` (written by ingest).
DISPOSITION_CONCEPT = "discharge_disposition"
_NEVER = 9_223_372_036_854_775_807


def _quoted(values: list[str]) -> str:
    return ", ".join("'" + value.replace("'", "''") + "'" for value in sorted(set(values)))


def _criteria_sql(criteria: CriteriaDef) -> list[str]:
    clauses: list[str] = []
    if criteria.min_age is not None:
        clauses.append(f"age >= {float(criteria.min_age)}")
    if criteria.max_age is not None:
        clauses.append(f"age <= {float(criteria.max_age)}")
    if criteria.sites is not None:
        clauses.append(f"site IN ({_quoted(criteria.sites)})" if criteria.sites else "FALSE")
    return clauses


def _exclusions_sql(cohort: CohortDef, latest: str) -> list[str]:
    """Conditions on ``rows r`` (patient_key, encounter_key, start_us, end_us, t_us) that keep a row."""
    clauses: list[str] = []
    if cohort.exclude_active:
        clauses.append(
            "NOT EXISTS (SELECT 1 FROM f WHERE f.patient_key = r.patient_key AND f.kind = 'encounter' "
            f"AND f.concept IN ({_quoted(list(cohort.exclude_active))}) AND {visible_at('f', 'r.t_us')} "
            "AND (f.end_us IS NULL OR f.end_us > r.t_us))"
        )
    if cohort.stop_after:
        events = " OR ".join(
            f"(f.kind = '{event.kind}' AND f.concept = {_quoted([event.concept])})" for event in cohort.stop_after
        )
        clauses.append(
            f"r.t_us < coalesce((SELECT min(f.eff_us) FROM f WHERE f.patient_key = r.patient_key AND {latest} "
            f"AND ({events}) AND f.eff_us >= r.start_us), {_NEVER})"
        )
    if cohort.exclude_dispositions:
        clauses.append(
            "NOT EXISTS (SELECT 1 FROM f WHERE f.patient_key = r.patient_key AND f.encounter_key = r.encounter_key "
            f"AND f.kind = 'encounter' AND f.concept = '{DISPOSITION_CONCEPT}' AND {latest} "
            f"AND f.value_code IN ({_quoted(list(cohort.exclude_dispositions))}))"
        )
    if cohort.exclude_transfers:
        clauses.append(
            "NOT EXISTS (SELECT 1 FROM stays s WHERE s.patient_key = r.patient_key "
            "AND s.encounter_key <> r.encounter_key AND s.start_us <= r.t_us "
            "AND (s.end_us IS NULL OR s.end_us > r.t_us))"
        )
    return clauses


def build_index(con: duckdb.DuckDBPyConnection, cohort: CohortDef, as_of_us: int) -> pa.Table:
    """Index rows for ``cohort`` from facts registered as ``f`` (see ``register_facts``), sorted by
    patient_key, index_time, encounter_key."""
    latest = known_by("f", str(as_of_us))
    classes = _quoted(list(cohort.encounter_classes))
    if cohort.schedule == "every":
        step = duration_us(cohort.every or "0h")
        times = f"unnest(generate_series(start_us + {step}, coalesce(end_us, {as_of_us} + 1) - 1, {step}))"
        where = "TRUE"
    else:
        times = "end_us"
        where = f"end_us IS NOT NULL AND end_us <= {as_of_us}"
    birth = _quoted([DEMOGRAPHIC_CONCEPTS["birth"]])
    include = _criteria_sql(cohort.include)
    exclude = _criteria_sql(cohort.exclude) if cohort.exclude is not None else []
    filters = list(include)
    if exclude:
        filters.append("NOT (" + " AND ".join(exclude) + ")")
    kept = _exclusions_sql(cohort, latest)
    query = f"""
        WITH stays AS (
            SELECT f.patient_key, f.encounter_key, any_value(f.site) AS site,
                   min(f.eff_us) AS start_us, max(f.end_us) AS end_us
            FROM f
            WHERE f.kind = 'encounter' AND f.concept = '{ENCOUNTER_CONCEPT}'
              AND f.value_code IN ({classes}) AND f.encounter_key IS NOT NULL AND {latest}
              AND f.eff_us <= {as_of_us}
            GROUP BY f.patient_key, f.encounter_key
        ),
        births AS (
            SELECT f.patient_key, arg_max(f.eff_us, (f.known_us, f.fact_id)) AS birth_us
            FROM f WHERE f.kind = 'demographic' AND f.concept IN ({birth}) AND {latest}
            GROUP BY f.patient_key
        ),
        scheduled AS (
            SELECT patient_key, encounter_key, site, start_us, end_us, {times} AS t_us FROM stays WHERE {where}
        ),
        rows AS (
            SELECT * FROM scheduled r WHERE {" AND ".join(kept) if kept else "TRUE"}
        ),
        aged AS (
            SELECT r.*, (r.t_us - b.birth_us) / {US_PER_YEAR} AS age
            FROM rows r LEFT JOIN births b USING (patient_key)
        )
        SELECT patient_key, make_timestamptz(t_us) AS index_time, encounter_key, site
        FROM aged WHERE {" AND ".join(filters) if filters else "TRUE"}
        ORDER BY patient_key, t_us, encounter_key
    """
    return con.sql(query).to_arrow_table().cast(INDEX_SCHEMA)
