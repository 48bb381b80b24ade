"""The point-in-time kernel: one function computes feature vectors for index rows from facts.

``compute_features`` turns facts into features for many index rows at once; the offline builder
runs it per patient partition (locally or on Dask). The online paths run
``vitalops.features.vector_kernel``, the same rules in plain Python for one patient's few facts,
and a property test holds the two to the same float64 values bit for bit: order-sensitive
aggregates (first, last) pick by ``(effective_at, fact_id)``; mean and slope are summed in that
order by ``vitalops.features.ordered_aggregates`` (DuckDB hands them over as ordered lists), and
every other aggregate is exact.

Categorical features are coded numerically: ``sex`` is 1.0 when the recorded sex equals the
declared value, 0.0 when another is recorded, null when none is; flags are 1.0/0.0.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from vitalops.core import duck
from vitalops.features.definitions import (
    AgeFeature,
    ConditionFeature,
    DatasetSpec,
    LengthOfStayFeature,
    MeasurementFeature,
    MedicationFeature,
    SexFeature,
    UtilizationFeature,
    duration_us,
)
from vitalops.features.facts_view import ENCOUNTER_CONCEPT, US_PER_HOUR, US_PER_YEAR, register_facts, visible_at
from vitalops.features.ordered_aggregates import means, slopes
from vitalops.lake.schema import TIMESTAMP

INDEX_SCHEMA = pa.schema(
    [
        pa.field("patient_key", pa.string(), nullable=False),
        pa.field("index_time", TIMESTAMP, nullable=False),
        pa.field("encounter_key", pa.string()),
        pa.field("site", pa.string()),
    ]
)
ATTRIBUTE_SCHEMA = pa.schema(
    [
        pa.field("attr_sex", pa.string()),
        pa.field("attr_age", pa.float64()),
        pa.field("attr_race", pa.string()),
        pa.field("attr_ethnicity", pa.string()),
    ]
)
DEMOGRAPHIC_CONCEPTS = {"birth": "birth", "sex": "sex", "race": "race", "ethnicity": "ethnicity"}
_ORDER = "ORDER BY f.eff_us, f.fact_id"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in_list(values: Sequence[str]) -> str:
    return ", ".join(_literal(value) for value in sorted(set(values)))


#: Prefix of the helper column holding a slope feature's ordered effective times.
SLOPE_TIMES_PREFIX = "_at_"


def _measurement_columns(feature: MeasurementFeature) -> dict[str, str]:
    """The SQL column(s) of a measurement feature. Mean and slope come out as ordered lists
    (values, and for slope effective times too), finished by ``ordered_aggregates``."""
    window = f"f.concept = {_literal(feature.concept)} AND f.eff_us > i.t_us - {duration_us(feature.window)}"
    numeric = f"FILTER (WHERE {window} AND f.value_num IS NOT NULL)"
    counted = f"count(f.fact_id) FILTER (WHERE {window})"
    numeric_count = f"count(f.value_num) {numeric}"
    last = f"arg_max(f.value_num, (f.eff_us, f.fact_id)) {numeric}"
    first = f"arg_min(f.value_num, (f.eff_us, f.fact_id)) {numeric}"
    expressions = {
        "last": last,
        "first": first,
        "min": f"min(f.value_num) {numeric}",
        "max": f"max(f.value_num) {numeric}",
        "mean": f"list(f.value_num {_ORDER}) {numeric}",
        "count": f"CAST({counted} AS DOUBLE)",
        "exists": f"CASE WHEN {counted} > 0 THEN 1.0 ELSE 0.0 END",
        "slope": f"list(f.value_num {_ORDER}) {numeric}",
        "delta": f"CASE WHEN {numeric_count} >= 2 THEN {last} - {first} END",
        "time_since_last": f"(i.t_us - max(f.eff_us) FILTER (WHERE {window})) / {US_PER_HOUR}",
    }
    columns = {feature.name: expressions[feature.agg]}
    if feature.agg == "slope":
        columns[SLOPE_TIMES_PREFIX + feature.name] = f"list(f.eff_us {_ORDER}) {numeric}"
    return columns


def _block(name: str, join: str, columns: dict[str, str]) -> str:
    selected = ", ".join(f'{expression} AS "{column}"' for column, expression in columns.items())
    return (
        f"{name} AS (SELECT i.row_id, {selected} FROM idx i LEFT JOIN f ON f.patient_key = i.patient_key "
        f"AND {join} GROUP BY i.row_id, i.t_us, i.encounter_key)"
    )


def _feature_blocks(spec: DatasetSpec) -> list[tuple[str, list[str]]]:
    """SQL common table expressions, each with the feature columns it yields."""
    blocks: list[tuple[str, list[str]]] = []
    visible = visible_at("f", "i.t_us")
    measurements = [f for f in spec.features if isinstance(f, MeasurementFeature)]
    if measurements:
        widest = max(duration_us(f.window) for f in measurements)
        join = (
            f"f.kind <> 'outcome' AND f.concept IN ({_in_list([f.concept for f in measurements])}) "
            f"AND {visible} AND f.eff_us > i.t_us - {widest}"
        )
        columns = {name: sql for f in measurements for name, sql in _measurement_columns(f).items()}
        blocks.append((_block("b_measure", join, columns), list(columns)))
    conditions = [f for f in spec.features if isinstance(f, ConditionFeature)]
    if conditions:
        concepts = _in_list([f.concept for f in conditions])
        join = f"f.kind = 'condition' AND f.concept IN ({concepts}) AND {visible}"
        columns = {}
        for condition in conditions:
            window = ""
            if condition.window is not None:
                window = f" AND f.eff_us > i.t_us - {duration_us(condition.window)}"
            hits = f"count(f.fact_id) FILTER (WHERE f.concept = {_literal(condition.concept)}{window})"
            columns[condition.name] = f"CASE WHEN {hits} > 0 THEN 1.0 ELSE 0.0 END"
        blocks.append((_block("b_condition", join, columns), list(columns)))
    medications = [f for f in spec.features if isinstance(f, MedicationFeature)]
    if medications:
        concepts = _in_list([f.concept for f in medications])
        join = f"f.kind = 'medication' AND f.concept IN ({concepts}) AND {visible}"
        columns = {}
        for medication in medications:
            concept = f"f.concept = {_literal(medication.concept)}"
            if medication.mode == "active":
                running = "(f.end_us IS NULL OR f.end_us > i.t_us)"
                active = f"count(f.fact_id) FILTER (WHERE {concept} AND {running})"
                columns[medication.name] = f"CASE WHEN {active} > 0 THEN 1.0 ELSE 0.0 END"
            else:
                window = f"f.eff_us > i.t_us - {duration_us(medication.window or '0h')}"
                columns[medication.name] = (
                    f"CAST(count(DISTINCT f.source_id) FILTER (WHERE {concept} AND {window}) AS DOUBLE)"
                )
        blocks.append((_block("b_medication", join, columns), list(columns)))
    utilization = [f for f in spec.features if isinstance(f, UtilizationFeature)]
    if utilization:
        join = (
            f"f.kind = 'encounter' AND f.concept = '{ENCOUNTER_CONCEPT}' AND {visible} "
            "AND f.encounter_key IS DISTINCT FROM i.encounter_key"
        )
        columns = {
            feature.name: (
                "CAST(count(DISTINCT f.source_id) FILTER (WHERE "
                f"f.value_code = {_literal(feature.encounter_class)} "
                f"AND f.eff_us > i.t_us - {duration_us(feature.window)}) AS DOUBLE)"
            )
            for feature in utilization
        }
        blocks.append((_block("b_utilization", join, columns), list(columns)))
    stays = [f for f in spec.features if isinstance(f, LengthOfStayFeature)]
    if stays:
        join = (
            f"f.kind = 'encounter' AND f.concept = '{ENCOUNTER_CONCEPT}' AND {visible} "
            "AND f.encounter_key = i.encounter_key"
        )
        columns = {feature.name: f"(i.t_us - min(f.eff_us)) / {US_PER_HOUR}" for feature in stays}
        blocks.append((_block("b_stay", join, columns), list(columns)))
    return blocks


def _demographics_block(spec: DatasetSpec) -> tuple[str, list[str]]:
    names = DEMOGRAPHIC_CONCEPTS
    latest = "(f.known_us, f.fact_id)"

    def code(concept: str) -> str:
        return f"arg_max(f.value_code, {latest}) FILTER (WHERE f.concept = {_literal(concept)})"

    birth = f"arg_max(f.eff_us, {latest}) FILTER (WHERE f.concept = {_literal(names['birth'])})"
    columns = {
        "attr_sex": code(names["sex"]),
        "attr_age": f"(i.t_us - {birth}) / {US_PER_YEAR}",
        "attr_race": code(names["race"]),
        "attr_ethnicity": code(names["ethnicity"]),
    }
    for feature in spec.features:
        if isinstance(feature, AgeFeature):
            columns[feature.name] = columns["attr_age"]
        elif isinstance(feature, SexFeature):
            sex = code(names["sex"])
            columns[feature.name] = (
                f"CASE WHEN {sex} IS NULL THEN NULL "
                f"WHEN {sex} = {_literal(feature.value)} THEN 1.0 ELSE 0.0 END"
            )
    concepts = _in_list(list(names.values()))
    join = f"f.kind = 'demographic' AND f.concept IN ({concepts}) AND {visible_at('f', 'i.t_us')}"
    return _block("b_demographic", join, columns), list(columns)


def feature_schema(spec: DatasetSpec) -> pa.Schema:
    """The kernel's output schema: index columns, subgroup attributes, then features in spec order."""
    fields = list(INDEX_SCHEMA) + list(ATTRIBUTE_SCHEMA)
    fields += [pa.field(name, pa.float64()) for name in spec.feature_names]
    return pa.schema(fields)


def apply_imputation(table: pa.Table, spec: DatasetSpec) -> pa.Table:
    """Fill each feature's nulls with its declared ``impute`` value; others stay null."""
    for feature in spec.features:
        if feature.impute is not None:
            position = table.schema.get_field_index(feature.name)
            filled = pc.fill_null(table.column(position), pa.scalar(float(feature.impute), pa.float64()))
            table = table.set_column(position, feature.name, filled)
    return table


def register_index(con: duckdb.DuckDBPyConnection, index: pa.Table) -> pa.Table:
    """Create temp table ``idx`` (row_id, patient_key, t_us, encounter_key) from ``index``; returns
    ``index`` cast to INDEX_SCHEMA."""
    index = index.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)
    con.register("index_in", index)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE idx AS SELECT row_number() OVER () - 1 AS row_id, patient_key, "
        "epoch_us(index_time) AS t_us, encounter_key FROM index_in"
    )
    con.unregister("index_in")
    return index


def select_features(con: duckdb.DuckDBPyConnection, index: pa.Table, spec: DatasetSpec) -> pa.Table:
    """Unimputed feature rows for ``idx`` (see ``register_index``) from facts registered as ``f``."""
    if len(index) == 0:
        return feature_schema(spec).empty_table()
    blocks = [_demographics_block(spec), *_feature_blocks(spec)]
    ctes = ",\n".join(sql for sql, _ in blocks)
    aliases = [sql.split(" AS ", 1)[0] for sql, _ in blocks]
    joins = " ".join(f"LEFT JOIN {alias} USING (row_id)" for alias in aliases)
    wanted = list(ATTRIBUTE_SCHEMA.names) + [name for _, names in blocks for name in names if name not in
                                              ATTRIBUTE_SCHEMA.names]
    selected = ", ".join(f'"{name}"' for name in wanted)
    query = f"WITH {ctes} SELECT {selected} FROM idx {joins} ORDER BY idx.row_id"
    computed = con.sql(query).to_arrow_table()
    columns = [index.column(name) for name in INDEX_SCHEMA.names]
    columns += [computed.column(name) for name in ATTRIBUTE_SCHEMA.names]
    index_us = pc.cast(index.column("index_time"), pa.int64()).to_numpy()
    for feature in spec.features:
        values = computed.column(feature.name)
        if isinstance(feature, MeasurementFeature) and feature.agg == "mean":
            values = pa.chunked_array([means(values)])
        elif isinstance(feature, MeasurementFeature) and feature.agg == "slope":
            times = computed.column(SLOPE_TIMES_PREFIX + feature.name)
            values = pa.chunked_array([slopes(times, values, index_us)])
        columns.append(_not_a_number_to_null(values))
    return pa.Table.from_arrays(columns, schema=feature_schema(spec))


def _not_a_number_to_null(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """A slope over simultaneous measurements is undefined: NaN becomes missing, like any gap."""
    values = values.cast(pa.float64())
    undefined = pc.fill_null(pc.invert(pc.is_finite(values)), False)
    return pc.if_else(undefined, pa.scalar(None, pa.float64()), values)


def compute_features(
    facts: pa.Table, index: pa.Table, spec: DatasetSpec, *, impute: bool = True
) -> pa.Table:
    """Feature vectors for each index row (same order), from facts visible at its ``index_time``.

    ``facts`` follows FACTS_SCHEMA (at least the engine's columns) and must hold every fact of the
    index's patients that the rows may use; ``index`` has patient_key, index_time, encounter_key,
    site. Returns ``feature_schema(spec)``; missing features are null unless imputed.
    """
    con = duck.connect()
    try:
        register_facts(con, facts)
        index = register_index(con, index)
        table = select_features(con, index, spec)
    finally:
        con.close()
    return apply_imputation(table, spec) if impute else table
