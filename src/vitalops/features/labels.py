"""Labels: whether the outcome happened within the horizon after each index time, and when that
became known.

A label looks only at facts effective within ``(T + start, T + horizon]`` (never at or before its
index), read in the facts' latest view at ``as_of``. Rules for ``label_known_at``:

* positive: the ``known_at`` of the earliest outcome fact in the horizon;
* negative: the end of the horizon, ``T + horizon``;
* censored: when ``T + horizon`` is after ``as_of`` (the facts' latest ``known_at``) the horizon is
  not complete, so the label and ``label_known_at`` are null, positive or not, so that late rows do
  not over-represent early outcomes.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from vitalops.features.definitions import LabelDef, duration_us
from vitalops.features.facts_view import ENCOUNTER_CONCEPT, known_by
from vitalops.lake.schema import TIMESTAMP

LABEL_SCHEMA = pa.schema([pa.field("label", pa.int8()), pa.field("label_known_at", TIMESTAMP)])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _outcome_predicate(label: LabelDef) -> str:
    if label.kind == "outcome":
        return "(" + " OR ".join(
            f"(f.kind = {_literal(o.kind)} AND f.concept = {_literal(o.concept)})" for o in label.outcomes
        ) + ")"
    classes = ", ".join(_literal(c) for c in sorted(set(label.encounter_classes)))
    return (
        f"(f.kind = 'encounter' AND f.concept = '{ENCOUNTER_CONCEPT}' "
        f"AND f.value_code IN ({classes}) "
        "AND f.encounter_key IS DISTINCT FROM i.encounter_key)"
    )


def compute_labels(con: duckdb.DuckDBPyConnection, label: LabelDef, as_of_us: int) -> pa.Table:
    """Labels for the index rows in temp table ``idx`` (row_id, patient_key, t_us, encounter_key)
    from facts registered as ``f``; one row per index row, in row_id order."""
    start, horizon = duration_us(label.start), duration_us(label.horizon)
    query = f"""
        WITH hits AS (
            SELECT i.row_id, i.t_us, count(f.fact_id) AS outcomes,
                   arg_min(f.known_us, (f.eff_us, f.known_us, f.fact_id)) AS outcome_known_us
            FROM idx i LEFT JOIN f ON f.patient_key = i.patient_key AND {known_by("f", str(as_of_us))}
                 AND f.eff_us > i.t_us + {start} AND f.eff_us <= i.t_us + {horizon}
                 AND {_outcome_predicate(label)}
            GROUP BY i.row_id, i.t_us
        )
        SELECT
            CAST(CASE WHEN t_us + {horizon} > {as_of_us} THEN NULL
                      WHEN outcomes > 0 THEN 1 ELSE 0 END AS TINYINT) AS label,
            CASE WHEN t_us + {horizon} > {as_of_us} THEN NULL
                 WHEN outcomes > 0 THEN make_timestamptz(outcome_known_us)
                 ELSE make_timestamptz(t_us + {horizon}) END AS label_known_at
        FROM hits ORDER BY row_id
    """
    return con.sql(query).to_arrow_table().cast(LABEL_SCHEMA)
