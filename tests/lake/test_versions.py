"""Which version of a resource is current when: numeric version order, known times that never go
back, and the three implementations of the rule (the lake's PIT view and the feature engine in
DuckDB, the online kernel in Python) against a direct reading of the rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalops.features.facts_view import register_facts
from vitalops.features.vector_kernel import facts_from_table
from vitalops.lake.facts import FactsStore, pit_view
from vitalops.lake.schema import FACTS_PARTITIONS, FACTS_SCHEMA

T0 = datetime(2024, 5, 1, 8, tzinfo=UTC)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def version_fact(version: str, known: datetime, *, issued: datetime | None = None, source: str = "o1",
                 value: float = 1.0) -> dict:
    """One heart-rate fact of version ``version`` of resource ``source``, effective at T0."""
    return {
        "fact_id": f"{source}-{version}", "patient_key": "p1", "site": "north", "month": "2024-05",
        "kind": "vital", "concept": "heart_rate", "value_num": value, "effective_at": T0,
        "known_at": known, "issued_at": issued, "source_type": "Observation", "source_id": source,
        "source_version": version, "batch_id": "b1",
    }


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=FACTS_SCHEMA)


def seen_by_each_path(facts: pa.Table, moment: datetime) -> dict[str, list[tuple[str, str, datetime]]]:
    """(source, version, known time) of the facts visible at ``moment``, by each implementation."""
    lake = sorted((r["source_id"], r["source_version"], r["known_at"]) for r in pit_view(facts, moment).to_pylist())
    at_us = int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
    con = duckdb.connect()
    try:
        register_facts(con, facts)
        engine_rows = con.execute(
            "SELECT fact_id, known_us FROM f WHERE eff_us <= $t AND known_us <= $t AND superseded_us > $t",
            {"t": at_us},
        ).fetchall()
    finally:
        con.close()
    kernel_rows = [(f.fact_id, f.known_us) for f in facts_from_table(facts) if f.visible_at(at_us)]
    by_id = {r["fact_id"]: (r["source_id"], r["source_version"]) for r in facts.to_pylist()}

    def named(rows: list[tuple[str, int]]) -> list[tuple[str, str, datetime]]:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return sorted((*by_id[fact_id], epoch + timedelta(microseconds=known)) for fact_id, known in rows)

    return {"lake": lake, "engine": named(engine_rows), "kernel": named(kernel_rows)}


def only_view(facts: pa.Table, moment: datetime) -> list[tuple[str, str, datetime]]:
    views = seen_by_each_path(facts, moment)
    assert views["lake"] == views["engine"] == views["kernel"], views
    return views["lake"]


@pytest.mark.parametrize(("older", "newer"), [("9", "10"), ("2", "10"), ("99", "100"), ("1", "02")])
def test_whole_number_versions_follow_one_another_as_numbers(older: str, newer: str) -> None:
    # Known at the same time (one ingest, no lastUpdated): the higher number is current.
    facts = table([version_fact(older, minutes(60)), version_fact(newer, minutes(60))])
    assert only_view(facts, minutes(59)) == []
    assert only_view(facts, minutes(60)) == [("o1", newer, minutes(60))]
    # In any order of arrival, and when the higher number came with an earlier lastUpdated.
    facts = table([version_fact(newer, minutes(30)), version_fact(older, minutes(60))])
    assert only_view(facts, minutes(45)) == []
    assert only_view(facts, minutes(60)) == [("o1", newer, minutes(60))]


def test_a_later_version_is_never_known_before_the_version_it_follows() -> None:
    # Version 2's lastUpdated (09:30) is before version 1 became known (10:00): version 2 is known at
    # 10:00, and version 1 is never current.
    facts = table([version_fact("1", minutes(120)), version_fact("2", minutes(90))])
    assert only_view(facts, minutes(100)) == []
    assert only_view(facts, minutes(120)) == [("o1", "2", minutes(120))]
    assert only_view(facts, minutes(600)) == [("o1", "2", minutes(120))]


def test_issued_counts_for_the_first_version_only() -> None:
    # An amendment keeps the original issued (09:00); it was made available at 13:00.
    facts = table([
        version_fact("1", minutes(70), issued=minutes(60), value=80.0),
        version_fact("2", minutes(300), issued=minutes(60), value=95.0),
    ])
    assert only_view(facts, minutes(59)) == []
    assert only_view(facts, minutes(60)) == [("o1", "1", minutes(60))]
    assert only_view(facts, minutes(299)) == [("o1", "1", minutes(60))]
    assert only_view(facts, minutes(300)) == [("o1", "2", minutes(300))]
    # Without issued, a first version is known at its lastUpdated (or ingest time).
    facts = table([version_fact("1", minutes(70)), version_fact("2", minutes(300))])
    assert only_view(facts, minutes(69)) == []
    assert only_view(facts, minutes(70)) == [("o1", "1", minutes(70))]


def test_without_whole_number_ids_versions_follow_their_known_at_then_their_text() -> None:
    facts = table([version_fact("b", minutes(60)), version_fact("a", minutes(90)), version_fact("c", minutes(90))])
    assert only_view(facts, minutes(60)) == [("o1", "b", minutes(60))]
    assert only_view(facts, minutes(90)) == [("o1", "c", minutes(90))]


def test_a_lake_written_before_issued_at_existed_reads_and_takes_new_facts(tmp_path: Path) -> None:
    old_schema = pa.schema([f for f in FACTS_SCHEMA if f.name not in ("issued_at", "source_unit", "effective_basis")])
    old = table([version_fact("1", minutes(60), value=80.0)]).select(old_schema.names).cast(old_schema)
    store = FactsStore(str(tmp_path))
    write_deltalake(store.uri, old, partition_by=FACTS_PARTITIONS)
    assert store.dataset().to_table().column("issued_at").to_pylist() == [None]
    assert store.dataset().to_table().column("source_unit").to_pylist() == [None]
    assert store.dataset().to_table().column("effective_basis").to_pylist() == [None]
    assert only_view(store.dataset().to_table(), minutes(60)) == [("o1", "1", minutes(60))]
    # The amendment lands (the table gains the column) and supersedes from its own known time.
    assert store.append(table([version_fact("2", minutes(300), issued=minutes(60), value=95.0)])) == 1
    assert {"issued_at", "source_unit", "effective_basis"} <= {f.name for f in DeltaTable(store.uri).schema().fields}
    facts = store.dataset().to_table()
    assert only_view(facts, minutes(299)) == [("o1", "1", minutes(60))]
    assert only_view(facts, minutes(300)) == [("o1", "2", minutes(300))]
    assert store.dataset(0).count_rows() == 1  # the version before the append still reads


# -- random histories --------------------------------------------------------------------------

def reference_view(versions: list[dict], moment: datetime) -> list[tuple[str, str, datetime]]:
    """The rule read directly: succession by number (all whole numbers) else by (known_at, text);
    first version at coalesce(issued, known_at), later ones at known_at, never before the previous."""
    by_source: dict[str, list[dict]] = {}
    for v in versions:
        by_source.setdefault(v["source_id"], []).append(v)
    seen = []
    for source, history in sorted(by_source.items()):
        if all(v["source_version"].isdigit() for v in history):
            ordered = sorted(history, key=lambda v: (int(v["source_version"]), v["source_version"]))
        else:
            ordered = sorted(history, key=lambda v: (v["known_at"], v["source_version"]))
        current = None
        known = None
        for position, v in enumerate(ordered):
            own = (v["issued_at"] or v["known_at"]) if position == 0 else v["known_at"]
            known = own if known is None else max(known, own)
            if known <= moment:
                current = (source, v["source_version"], known)
        if current is not None:
            seen.append(current)
    return seen


NUMBER_IDS = st.integers(min_value=0, max_value=120).map(str)
TEXT_IDS = st.sampled_from(["a", "b", "c", "v1", "v10", "v9", "2024-05-01T10:00:00Z", "x7", "07", "7"])


@st.composite
def histories(draw: st.DrawFn) -> list[dict]:
    rows = []
    for source in ("o1", "o2"):
        ids = draw(st.lists(st.one_of(NUMBER_IDS, TEXT_IDS) if draw(st.booleans()) else NUMBER_IDS,
                            min_size=1, max_size=6, unique=True))
        for version in ids:
            issued = draw(st.one_of(st.none(), st.integers(0, 600).map(minutes)))
            rows.append(version_fact(version, draw(st.integers(0, 600).map(minutes)), issued=issued, source=source,
                                     value=float(draw(st.integers(40, 200)))))
    return rows


@settings(max_examples=60, deadline=None, database=None)
@given(rows=histories(), at=st.lists(st.integers(-10, 620).map(minutes), min_size=1, max_size=4))
def test_every_implementation_follows_the_rule_on_random_histories(rows: list[dict], at: list[datetime]) -> None:
    facts = table(rows)
    for moment in at:
        assert only_view(facts, moment) == reference_view(rows, moment)
