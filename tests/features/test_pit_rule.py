"""The engine's interval form of the PIT rule selects exactly what ``vitalops.lake.facts.pit_view``
selects, at any moment, on a real synthetic hospital's facts (with versioned encounters)."""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from vitalops.features.facts_view import EXCLUDED_STATUSES, register_facts, visible_at
from vitalops.lake.facts import FactsStore, pit_view


def test_interval_rule_equals_the_lake_rule(hospital_lake) -> None:
    dataset = FactsStore(hospital_lake.lake_root).dataset()
    second_versions = dataset.to_table(columns=["patient_key"], filter=pc.field("source_version") == "2")
    patients = pc.unique(second_versions.column("patient_key")).slice(0, 8)
    assert len(patients) > 0, "the synthetic hospital should hold second versions of encounters"
    facts = dataset.to_table(filter=pc.field("patient_key").isin(patients))
    moments = random.Random(3).sample(facts.column("known_at").to_pylist(), 12)
    con = duckdb.connect()
    register_facts(con, facts)
    excluded = pa.array(list(EXCLUDED_STATUSES))
    for moment in moments:
        moment_us = int(moment.timestamp() * 1_000_000)
        engine = con.sql(f"SELECT fact_id FROM f WHERE {visible_at('f', str(moment_us))}").fetchall()
        lake = pit_view(facts, moment)
        lake = lake.filter(pc.less_equal(lake.column("effective_at"), moment))
        lake = lake.filter(pc.invert(pc.fill_null(pc.is_in(lake.column("status"), value_set=excluded), False)))
        assert {row[0] for row in engine} == set(lake.column("fact_id").to_pylist())
