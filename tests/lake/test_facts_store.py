from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from tests.ingest.fhir_builders import encounter, observation, patient
from vitalops.ingest.normalize import resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.lake.facts import FactsStore, pit_view
from vitalops.terminology import load_terminology

KEY = Pseudonymizer(b"secret").patient_key("p1")


@pytest.fixture(scope="module")
def facts():
    resources = [
        patient(),
        encounter("e1", version="1", updated="2024-05-01T08:00:00Z", start="2024-05-01T08:00:00Z",
                  status="in-progress"),
        encounter("e1", version="2", updated="2024-05-05T12:00:00Z", start="2024-05-01T08:00:00Z",
                  end="2024-05-05T12:00:00Z", disposition="home"),
        observation("o1", issued="2024-05-02T00:00:00Z", effective="2024-05-01T12:00:00Z"),
        observation("o2", pid="p2", effective="2024-06-01T12:00:00Z", issued="2024-06-01T13:00:00Z"),
    ]
    return resources_to_facts(
        resources, site="S1", pseudonymizer=Pseudonymizer(b"secret"), terminology=load_terminology(),
        known_at_default=datetime(2025, 1, 1, tzinfo=UTC), batch_id="b1",
    ).facts


def test_append_is_idempotent_and_versioned(tmp_path: Path, facts) -> None:
    store = FactsStore(str(tmp_path))
    assert not store.exists() and store.version is None
    assert store.dataset().to_table().num_rows == 0
    assert store.append(facts) == facts.num_rows
    assert store.append(facts) == 0
    assert store.append(facts.slice(0, 3)) == 0
    assert store.version == 0
    assert store.dataset(0).count_rows() == facts.num_rows


def test_small_commits_and_duplicates_inside_one_append(tmp_path: Path, facts) -> None:
    store = FactsStore(str(tmp_path), commit_rows=2)
    doubled = facts.slice(0, 3).to_batches()[0]
    table = pa.Table.from_batches([doubled, doubled])
    assert store.append(table) == 3
    assert store.version is not None and store.version >= 1


def test_pit_view_supersedes_old_versions_only_from_when_the_new_one_is_known(tmp_path: Path, facts) -> None:
    store = FactsStore(str(tmp_path))
    store.append(facts)

    def encounter_versions(as_of: datetime) -> set[str]:
        table = store.for_patients([KEY], as_of=as_of)
        return {row["source_version"] for row in table.to_pylist() if row["source_type"] == "Encounter"}

    assert encounter_versions(datetime(2024, 4, 30, tzinfo=UTC)) == set()
    assert encounter_versions(datetime(2024, 5, 3, tzinfo=UTC)) == {"1"}
    assert encounter_versions(datetime(2024, 5, 6, tzinfo=UTC)) == {"2"}
    # The observation was issued a day after it was taken: invisible before then.
    at_noon = store.for_patients([KEY], as_of=datetime(2024, 5, 1, 13, tzinfo=UTC))
    assert "heart_rate" not in at_noon["concept"].to_pylist()
    everything = store.for_patients([KEY])
    assert set(everything["patient_key"].to_pylist()) == {KEY}
    assert "heart_rate" in everything["concept"].to_pylist()
    # history stays queryable in the table itself
    assert {"1", "2"} <= set(store.dataset().to_table()["source_version"].to_pylist())
    assert pit_view(facts).num_rows == everything.num_rows + 1  # + the other patient's fact


def test_compaction_merges_small_files_and_changes_no_fact(tmp_path: Path, facts) -> None:
    store = FactsStore(str(tmp_path), commit_rows=1)
    assert store.append(facts) == facts.num_rows
    before = store.version
    files_before = len(DeltaTable(store.uri).file_uris())
    removed = store.compact()
    assert removed > 0 and len(DeltaTable(store.uri).file_uris()) < files_before
    assert store.version == before + 1

    def rows(version: int | None) -> list[dict]:
        return sorted(store.dataset(version).to_table().to_pylist(), key=lambda row: row["fact_id"])

    assert rows(None) == rows(before)  # same facts; the earlier version stays readable
    assert store.compact() == 0  # nothing left to merge


def test_a_reread_dataset_follows_new_commits_and_a_table_created_again(tmp_path: Path, facts) -> None:
    import shutil

    store = FactsStore(str(tmp_path), commit_rows=2)
    assert store.append(facts.slice(0, 2)) == 2
    first = store.dataset()
    assert store.dataset() is first  # the same version read again: its file listing is reused
    assert store.append(facts.slice(2)) == facts.num_rows - 2
    assert store.dataset().count_rows() == facts.num_rows  # a new version: listed again
    assert store.dataset(0).count_rows() == 2
    shutil.rmtree(tmp_path / "facts")  # deleted and created again: version 0 again, other files
    again = FactsStore(str(tmp_path))
    assert again.append(facts.slice(0, 1)) == 1 and again.version == 0
    assert again.dataset().count_rows() == 1 and again.dataset(0).count_rows() == 1


def test_the_latest_known_time_comes_from_the_log_and_equals_the_column(tmp_path: Path, facts) -> None:
    import pyarrow.compute as pc

    store = FactsStore(str(tmp_path), commit_rows=2)
    assert store.latest_known_at() is None
    store.append(facts)
    expected = pc.max(store.dataset().to_table(columns=["known_at"])["known_at"]).as_py()
    assert store.latest_known_at() == expected and store.latest_known_at().tzinfo is not None
