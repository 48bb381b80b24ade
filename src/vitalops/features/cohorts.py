"""Cohorts: the index rows (patient, encounter, index time) at which predictions are made.

The cohort is the sampling design, so it reads encounters as finally known (the facts' latest
view at ``as_of``): an inpatient stay scored every 4 hours runs from admission + 4 h to its
discharge even though, at each index time, the features only see the stay as it was known then.
Stays still open at ``as_of`` are scored up to ``as_of``; discharge cohorts need a discharge.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from vitalops.features.definitions import CohortDef, CriteriaDef, duration_us
from vitalops.features.engine import DEMOGRAPHIC_CONCEPTS, INDEX_SCHEMA
from vitalops.features.facts_view import ENCOUNTER_CONCEPT, US_PER_YEAR, known_by

#: Fact kinds the cohort reads.
COHORT_KINDS = ("encounter", "demographic")


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
        rows AS (
            SELECT patient_key, encounter_key, site, {times} AS t_us FROM stays WHERE {where}
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
