"""The online path: one patient's feature vector at a moment, from the facts store or straight
from FHIR resources (a CDS Hooks prefetch), through the same kernel as the offline builder.

The index row is the moment ``at`` and the patient's current encounter as known at ``at``: the
encounter in progress (started by ``at``, not ended before it), inpatient first, latest start
first. Pass ``encounter_key`` to name it instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from vitalops.core.clock import as_utc
from vitalops.errors import InvalidInput
from vitalops.features.definitions import DatasetSpec
from vitalops.features.engine import INDEX_SCHEMA, apply_imputation, register_index, select_features
from vitalops.features.facts_view import ENCOUNTER_CONCEPT, ENGINE_COLUMNS, register_facts, visible_at
from vitalops.features.partitions import open_facts
from vitalops.ingest.normalize import resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.terminology import Terminology

FeatureVector = dict[str, float | None]


def _epoch_us(moment: datetime) -> int:
    return int(pa.scalar(as_utc(moment), type=INDEX_SCHEMA.field("index_time").type).cast(pa.int64()).as_py())


def _current_encounter(con: duckdb.DuckDBPyConnection, at_us: int) -> tuple[str | None, str | None]:
    rows = con.sql(
        f"""
        SELECT f.encounter_key, f.site FROM f
        WHERE f.kind = 'encounter' AND f.concept = '{ENCOUNTER_CONCEPT}' AND {visible_at("f", str(at_us))}
          AND (f.end_us IS NULL OR f.end_us >= {at_us})
        ORDER BY (f.value_code = 'IMP') DESC, f.eff_us DESC, f.fact_id DESC LIMIT 1
        """
    ).fetchall()
    if rows:
        return rows[0][0], rows[0][1]
    site = con.sql(f"SELECT arg_max(site, (known_us, fact_id)) FROM f WHERE known_us <= {at_us}").fetchall()
    return None, site[0][0] if site else None


def vector_from_facts(
    facts: pa.Table, spec: DatasetSpec, patient_key: str, *, at: datetime, encounter_key: str | None = None
) -> FeatureVector:
    """The feature vector of ``patient_key`` at ``at`` from ``facts`` (all of that patient's facts,
    or at least all known by ``at``); imputation applied as declared."""
    at = as_utc(at)
    at_us = _epoch_us(at)
    con = duckdb.connect()
    try:
        register_facts(con, facts)
        current, site = _current_encounter(con, at_us)
        index = pa.Table.from_pylist(
            [{"patient_key": patient_key, "index_time": at, "encounter_key": encounter_key or current,
              "site": site}],
            schema=INDEX_SCHEMA,
        )
        index = register_index(con, index)
        row = apply_imputation(select_features(con, index, spec), spec)
    finally:
        con.close()
    return {name: row.column(name)[0].as_py() for name in spec.feature_names}


def features_from_store(
    spec: DatasetSpec,
    lake_root: str,
    patient_key: str,
    *,
    at: datetime,
    encounter_key: str | None = None,
    facts_version: int | None = None,
) -> FeatureVector:
    """The feature vector of ``patient_key`` at ``at`` from the facts store (latest version unless
    ``facts_version``); facts known after ``at`` are never used."""
    dataset, _ = open_facts(lake_root, facts_version)
    facts = dataset.to_table(columns=list(ENGINE_COLUMNS), filter=pc.field("patient_key") == patient_key)
    return vector_from_facts(facts, spec, patient_key, at=at, encounter_key=encounter_key)


def features_from_resources(
    spec: DatasetSpec,
    resources: list[dict[str, Any]],
    *,
    at: datetime,
    site: str,
    pseudonymizer: Pseudonymizer,
    terminology: Terminology,
    encounter_key: str | None = None,
) -> FeatureVector:
    """The feature vector at ``at`` from one patient's FHIR resources, normalized exactly as ingest
    does, without touching the lake. Resources without meta.lastUpdated count as known at ``at``.

    Raises InvalidInput when the resources yield no patient or more than one.
    """
    result = resources_to_facts(
        resources, site=site, pseudonymizer=pseudonymizer, terminology=terminology, known_at_default=as_utc(at)
    )
    patients = pc.unique(result.facts.column("patient_key")).to_pylist()
    if len(patients) != 1:
        raise InvalidInput(f"the resources describe {len(patients)} patients; exactly one is needed")
    return vector_from_facts(result.facts, spec, patients[0], at=at, encounter_key=encounter_key)
