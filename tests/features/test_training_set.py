"""Training sets from the synthetic hospital: the demo definitions build, round-trip through
Delta with their fingerprint, and give the same rows on a one-worker Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from distributed import LocalCluster

from vitalops.features import build_training_set, demo_spec_path, load_spec, read_training_set, summarize
from vitalops.features.training_set import FINGERPRINT_FILE, write_training_set


@pytest.fixture(scope="module")
def deterioration(hospital_lake):
    return build_training_set(load_spec(demo_spec_path("deterioration")), hospital_lake.lake_root, partitions=3)


@pytest.fixture(scope="module")
def dask_scheduler() -> Iterator[str]:
    # A generous start-up timeout: on a loaded 2-core machine a worker process can take a while.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      timeout=120) as cluster:
        yield cluster.scheduler_address


def test_deterioration_set_has_the_contract_columns_and_labels(deterioration) -> None:
    table = deterioration.table
    assert table.column_names[:10] == [
        "patient_key", "site", "encounter_key", "index_time", "label", "label_known_at",
        "attr_sex", "attr_age", "attr_race", "attr_ethnicity",
    ]
    assert table.column_names[10:] == deterioration.feature_names
    assert str(table.schema.field("label").type) == "int8"
    summary = summarize(deterioration)
    assert summary["rows"] == table.num_rows > 500
    assert 0 < summary["positives"] < summary["labelled"]
    assert {site["site"] for site in summary["sites"]} == {"north", "south"}
    # a label is never known before its index time
    known = table.filter(pc.is_valid(table.column("label_known_at")))
    assert pc.all(pc.greater(known.column("label_known_at"), known.column("index_time"))).as_py()
    # the cohort scores at admission + 4 h steps: length of stay is a positive multiple of 4 h
    stays = table.column("length_of_stay_hours").drop_null().to_pylist()
    assert stays and all(hours > 0 and hours % 4 == 0 for hours in stays)


def test_readmission_set_builds_at_discharge(hospital_lake) -> None:
    readmission = build_training_set(load_spec(demo_spec_path("readmission")), hospital_lake.lake_root)
    summary = summarize(readmission)
    assert summary["rows"] > 50 and summary["positives"] > 0
    assert readmission.table.column("length_of_stay_hours").null_count == 0


def test_partitioning_does_not_change_the_rows(hospital_lake, deterioration) -> None:
    single = build_training_set(deterioration.spec, hospital_lake.lake_root, partitions=1)
    assert single.table.equals(deterioration.table)
    assert single.fingerprint == deterioration.fingerprint


def test_written_set_round_trips_with_its_fingerprint(tmp_path: Path, deterioration) -> None:
    out = str(tmp_path / "deterioration")
    version = write_training_set(deterioration, out)
    assert version == 0
    assert (tmp_path / "deterioration" / FINGERPRINT_FILE).exists()
    again = read_training_set(out)
    assert again.fingerprint == deterioration.fingerprint
    assert again.table.equals(deterioration.table)
    assert again.spec.version == deterioration.spec.version
    history = DeltaTable(out).history()[0]
    assert deterioration.fingerprint.content_sha256 in history["vitalops.training_set"]


def test_an_older_facts_version_is_reproducible(hospital_lake, deterioration) -> None:
    again = build_training_set(deterioration.spec, hospital_lake.lake_root, facts_version=0)
    assert again.fingerprint.facts_version == 0
    assert again.fingerprint.content_sha256 == deterioration.fingerprint.content_sha256


def test_dask_engine_equals_local_row_for_row(hospital_lake, deterioration, dask_scheduler: str) -> None:
    seen: list[tuple[int, int]] = []
    on_dask = build_training_set(
        deterioration.spec, hospital_lake.lake_root, engine="dask", scheduler=dask_scheduler, partitions=3,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert on_dask.table.equals(deterioration.table)
    assert on_dask.fingerprint == deterioration.fingerprint
    assert seen[-1] == (3, 3)
