"""The online store: facts read back exactly, vectors from it equal the offline training-set rows
bit for bit, retention never drops what a vector at "now" reads, and writing is idempotent (a crash
and a rerun equal one clean run); on SQLite and on Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.features.online_backends import BACKENDS, open_store
from tests.features.test_online import _bits
from vitalops.features import features_from_store
from vitalops.features.facts_view import ENGINE_COLUMNS
from vitalops.features.online import vector_from_facts
from vitalops.features.online_store import (
    OnlineStore,
    decode_rows,
    encode_rows,
    longest_lookback_us,
    open_online_store,
    rebuild,
)
from vitalops.lake.facts import FactsStore
from vitalops.serving import OnlineFacts


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    yield from open_store(request.param, tmp_path)


@pytest.fixture(scope="module")
def lake_facts(hospital_lake) -> pa.Table:
    return FactsStore(hospital_lake.lake_root).dataset().to_table(columns=list(ENGINE_COLUMNS))


@pytest.fixture(scope="module")
def retention_us(demo_sets) -> int:
    value = longest_lookback_us(s.spec for s in demo_sets.values())
    assert value is not None
    return value


def _sorted(facts: pa.Table) -> pa.Table:
    return facts.select(list(ENGINE_COLUMNS)).sort_by([("patient_key", "ascending"), ("fact_id", "ascending")])


def _content(store: OnlineStore, patients: list[str]) -> dict[str, dict[str, bytes]]:
    return store.rows(patients)


def _patients(facts: pa.Table) -> list[str]:
    return sorted(pc.unique(facts.column("patient_key")).to_pylist())


def test_facts_read_back_exactly(store, lake_facts) -> None:
    store.write(lake_facts, None)
    patients = _patients(lake_facts)
    read = pa.concat_tables(store.facts_for(key) for key in patients)
    assert _sorted(read).equals(_sorted(lake_facts.cast(read.schema)))
    assert store.patients() == len(patients)
    assert store.facts_for("no-such-patient").num_rows == 0


def test_non_finite_values_round_trip() -> None:
    facts = pa.table({name: [None] * 3 for name in ENGINE_COLUMNS})
    facts = facts.set_column(facts.schema.get_field_index("value_num"), "value_num",
                             pa.array([float("nan"), float("inf"), -0.0]))
    for name in ("fact_id",):
        facts = facts.set_column(facts.schema.get_field_index(name), name, pa.array(["a", "b", "c"]))
    facts = facts.set_column(facts.schema.get_field_index("patient_key"), "patient_key", pa.array(["p"] * 3))
    for name in ("effective_at", "known_at"):
        facts = facts.set_column(facts.schema.get_field_index(name), name,
                                 pa.array([0, 1, 2], pa.timestamp("us", tz="UTC")))
    rows = {fact_id: row for _, fact_id, row in encode_rows(facts)}
    values = decode_rows("p", rows).column("value_num").to_pylist()
    assert str(values[0]) == "nan" and values[1] == float("inf") and str(values[2]) == "-0.0"


def test_rows_are_each_facts_own_json_even_when_text_holds_row_boundaries(store) -> None:
    """A row is ``orjson.dumps`` of the fact's values whatever its text holds (brackets and commas
    that spell a boundary between rows in a dump of many), and it reads back exactly."""
    texts = ["plain", "a],[b", "],[", "[", "]", 'quote" ],[ back\\', "é\u2028"]
    facts = pa.table({name: [None] * len(texts) for name in ENGINE_COLUMNS})
    strings = {"fact_id": [f"f{i}" for i in range(len(texts))], "patient_key": ["p", "q"] * 3 + ["p"],
               "site": ["s"] * len(texts), "kind": ["observation"] * len(texts), "value_code": texts,
               "source_type": ["Observation"] * len(texts), "source_id": texts[::-1],
               "source_version": ["1"] * len(texts)}
    for name, values in strings.items():
        facts = facts.set_column(facts.schema.get_field_index(name), name, pa.array(values, pa.string()))
    for name in ("effective_at", "known_at"):
        facts = facts.set_column(facts.schema.get_field_index(name), name,
                                 pa.array(range(len(texts)), pa.timestamp("us", tz="UTC")))
    times = ("effective_at", "known_at", "effective_end", "issued_at")
    free = [i for i, (a, b) in enumerate(zip(texts, texts[::-1], strict=True)) if "],[" not in a + b]
    assert 1 < len(free) < len(texts)  # both ways of encoding are taken
    for part in (facts, facts.take(free)):
        columns = [(part.column(name).cast(pa.int64()) if name in times else part.column(name)).to_pylist()
                   for name in ENGINE_COLUMNS if name not in ("fact_id", "patient_key")]
        assert [row for _, _, row in encode_rows(part)] == [orjson.dumps(v) for v in zip(*columns, strict=True)]
        assert store.write(part, None) == part.num_rows
    read = pa.concat_tables(store.facts_for(key) for key in ("p", "q"))
    assert _sorted(read).equals(_sorted(facts.cast(read.schema)))


def test_vectors_from_the_store_equal_the_offline_rows(store, lake_facts, demo_sets, hospital_lake) -> None:
    """The store written with no retention (nothing registered) serves every moment exactly: the
    training-set row for the named encounter, and the lake's vector for the inferred one."""
    store.write(lake_facts, None)
    source = OnlineFacts(store)

    @settings(max_examples=24, deadline=None, database=None)
    @given(name=st.sampled_from(sorted(demo_sets)), pick=st.floats(min_value=0, max_value=1))
    def check(name: str, pick: float) -> None:
        table = demo_sets[name].table
        row = table.slice(min(int(pick * table.num_rows), table.num_rows - 1), 1).to_pylist()[0]
        spec, key, moment = demo_sets[name].spec, row["patient_key"], row["index_time"]
        facts = source.facts_for(key)
        vector = vector_from_facts(facts, spec, key, at=moment, encounter_key=row["encounter_key"])
        assert _bits(vector) == _bits({feature: row[feature] for feature in spec.feature_names})
        inferred = vector_from_facts(facts, spec, key, at=moment)
        assert _bits(inferred) == _bits(features_from_store(spec, hospital_lake.lake_root, key, at=moment))

    check()


def test_retention_keeps_every_fact_a_vector_at_now_reads(store, lake_facts, demo_sets, retention_us,
                                                          hospital_lake) -> None:
    """With the demo sets' retention the store holds fewer facts, and at any moment from a patient's
    newest known time on, its vectors equal those over all of the patient's facts in the lake."""
    kept = rebuild(store, lake_facts, retention_us, batch_facts=5_000)
    assert 0 < kept < lake_facts.num_rows
    patients = _patients(lake_facts)
    newest = {key: max(store.facts_for(key).column("known_at").to_pylist()) for key in patients}

    @settings(max_examples=24, deadline=None, database=None)
    @given(name=st.sampled_from(sorted(demo_sets)), pick=st.integers(0, len(patients) - 1),
           later_hours=st.integers(0, 24 * 40))
    def check(name: str, pick: int, later_hours: int) -> None:
        key, spec = patients[pick], demo_sets[name].spec
        moment = newest[key] + timedelta(hours=later_hours)
        served = vector_from_facts(store.facts_for(key), spec, key, at=moment)
        assert _bits(served) == _bits(features_from_store(spec, hospital_lake.lake_root, key, at=moment))

    check()


def test_writes_are_idempotent_and_a_rerun_after_a_crash_equals_one_clean_run(
    store, lake_facts, retention_us, tmp_path
) -> None:
    chunks = [lake_facts.slice(start, 1_500) for start in range(0, lake_facts.num_rows, 1_500)]
    for chunk in chunks[:3]:  # the crashed run: some chunks written, then killed
        store.write(chunk, retention_us)
    for chunk in chunks:  # the rerun writes every chunk again
        store.write(chunk, retention_us)
    clean = open_online_store(f"sqlite:///{tmp_path / 'clean.db'}")
    for chunk in chunks:
        clean.write(chunk, retention_us)
    patients = _patients(lake_facts)
    assert _content(store, patients) == _content(clean, patients)
    for chunk in chunks:  # and once more: nothing changes
        store.write(chunk, retention_us)
    assert _content(store, patients) == _content(clean, patients)
    assert store.covers(retention_us) and not store.covers(retention_us + 1) and not store.covers(None)
    clean.close()


def test_rebuild_is_idempotent_and_records_what_it_kept(store, lake_facts, retention_us) -> None:
    assert not store.populated() and not store.covers(retention_us)
    first = rebuild(store, lake_facts, retention_us)
    patients = _patients(lake_facts)
    before = _content(store, patients)
    assert rebuild(store, lake_facts, retention_us) == first
    assert _content(store, patients) == before
    rebuild(store, lake_facts, None)
    assert store.covers(None) and store.covers(retention_us)


def test_a_store_url_of_another_scheme_is_refused() -> None:
    from vitalops.errors import InvalidInput

    with pytest.raises(InvalidInput):
        open_online_store("memcached://127.0.0.1")
