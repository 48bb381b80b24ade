"""Batch scoring: exact scores, the Dask engine row for row, lineage, routing, the archive, roles."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from tests.governance.plans import SCIENTIST
from vitalops.audit import list_events
from vitalops.auth import Principal, Role
from vitalops.batch import read_lineage, score_batch
from vitalops.batch import scoring as scoring_module
from vitalops.batch.kernel import feature_matrix
from vitalops.errors import Conflict, InvalidInput, PermissionDenied
from vitalops.features import demo_spec_path
from vitalops.lake.archive import PredictionArchive
from vitalops.serving.routing import on_challenger_side, site_deployments

OPERATOR = Principal(name="otto", roles=frozenset({Role.OPERATOR}))
CLINICIAN = Principal(name="casey", roles=frozenset({Role.CLINICIAN}))
COHORT = demo_spec_path("deterioration")
KEYS = ["patient_key", "index_time", "encounter_key"]


def _score(served, out: Path, **options):
    options.setdefault("cohort", COHORT)
    options.setdefault("archive_root", str(out.parent / "lake"))  # the hospital lake is shared by the session
    return score_batch(served.database, options.pop("actor", SCIENTIST), "deterioration", str(out),
                       lake_root=served.lake.lake_root, runtime=served.context.runtime, **options)


def _sorted(table: pa.Table, keys=KEYS) -> pa.Table:
    return table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys]))


def _archived(tmp_path: Path) -> pa.Table:
    return PredictionArchive(str(tmp_path / "lake")).dataset().to_table()


def _loaded(served, number: int):
    with served.database.session() as session:
        deployments = site_deployments(session, "deterioration", "north")
        version_id = deployments.champion[1] if number == 1 else deployments.challenger[1]
        return served.context.runtime.version(session, version_id)


def test_a_cohort_batch_equals_the_versions_scores_on_the_training_set_exactly(served, tmp_path):
    summary = _score(served, tmp_path / "out")
    output = _sorted(DeltaTable(str(tmp_path / "out")).to_pyarrow_table())
    expected = _sorted(served.training_set.table)
    assert output.num_rows == expected.num_rows == summary["rows"] == summary["predictions"]
    for key in KEYS + ["site"]:
        assert output.column(key).to_pylist() == expected.column(key).to_pylist()
    version = _loaded(served, 1)
    scores = version.score_rows(feature_matrix(expected, version.feature_names))
    assert np.array_equal(output.column("score").to_numpy(), scores)  # bit for bit, not within a tolerance
    assert output.column("band").to_pylist() == [version.band_of(float(s)) for s in scores]
    assert output.column("decision").to_pylist() == [bool(s >= version.threshold) for s in scores]
    assert set(output.column("mode").to_pylist()) == {"champion"}
    # a batch row equals the same row scored alone (the serving path's one-row call)
    for index in (0, output.num_rows // 3, output.num_rows - 1):
        row = feature_matrix(expected.slice(index, 1), version.feature_names)[0]
        assert version.score_row(row).score == output.column("score")[index].as_py()


def test_lineage_in_the_delta_commit_and_one_audit_event_with_counts_only(served, tmp_path):
    summary = _score(served, tmp_path / "out")
    lineage = read_lineage(str(tmp_path / "out"))
    version = _loaded(served, 1)
    assert lineage["model"] == "deterioration" and lineage["run_id"] == summary["run_id"]
    assert lineage["input"]["facts_version"] == served.training_set.fingerprint.facts_version
    assert lineage["input"]["definitions_version"] == served.training_set.spec.version
    with served.database.session() as session:
        events = {site: site_deployments(session, "deterioration", site).champion[2] for site in ("north", "south")}
        audited = list_events(session, action="batch.scored")
    assert sorted((d["site"], d["version"], d["artifact_sha256"], d["definitions_version"], d["deployment_event_id"],
                   d["mode"]) for d in lineage["deployments"]) == [
        (site, 1, version.artifact_sha256, served.training_set.spec.version, events[site], "champion")
        for site in ("north", "south")]
    assert len(audited) == 1
    payload = audited[0].payload
    assert payload["rows"] == summary["rows"] and payload["by_mode"] == {"champion": summary["rows"]}
    assert payload["out"] == str(tmp_path / "out")
    text = orjson.dumps(payload).decode()
    keys = set(served.training_set.table.column("patient_key").to_pylist())
    assert not any(key in text for key in keys)


def test_routing_of_batch_rows_agrees_with_the_stable_patient_hash(served, tmp_path):
    served.deploy(2, "canary:40", "north")
    served.deploy(2, "shadow", "south")
    with served.database.session() as session:
        canary_event = site_deployments(session, "deterioration", "north").challenger[2]
    run = _score(served, tmp_path / "out")["run_id"]
    output = DeltaTable(str(tmp_path / "out")).to_pyarrow_table().to_pylist()
    north = [row for row in output if row["site"] == "north"]
    assert north and len(north) < len(output), "the hospital lake has rows at both sites"
    for row in north:
        canary = on_challenger_side(canary_event, row["patient_key"], 40)
        assert row["mode"] == ("canary" if canary else "champion")
        assert row["version"] == (2 if canary else 1)
    assert all(row["mode"] == "champion" for row in output if row["site"] == "south")
    archive = _archived(tmp_path).to_pylist()
    assert {row["request_id"] for row in archive} == {run}
    unserved = [row for row in archive if not row["served"]]
    shadow_rows = sum(row["site"] == "south" for row in output)
    canary_rows = sum(row["mode"] == "canary" for row in north)
    assert sum(row["mode"] == "shadow" for row in unserved) == shadow_rows
    assert sum(row["mode"] == "champion" for row in unserved) == canary_rows
    # the archive holds the exact vector each version scored
    version = _loaded(served, 2)
    some = next(row for row in archive if row["version"] == 2)
    vector = np.asarray([np.nan if v is None else v for v in some["features"]])
    assert version.score_row(vector).score == some["score"]
    assert orjson.loads(some["features_json"]) == some["features"]
    assert some["feature_names"] == list(version.feature_names)


def test_the_dask_engine_gives_the_local_table_row_for_row(served, tmp_path):
    from distributed import LocalCluster

    served.deploy(2, "canary:30", "north")
    local = _score(served, tmp_path / "local", partitions=3)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        dask = _score(served, tmp_path / "dask", partitions=3, engine="dask", scheduler=cluster.scheduler_address)
    assert local["run_id"] == dask["run_id"]  # the same rows scored by the same deployments
    left = DeltaTable(str(tmp_path / "local")).to_pyarrow_table()
    right = DeltaTable(str(tmp_path / "dask")).to_pyarrow_table()
    assert left.num_rows == right.num_rows > 0
    assert _sorted(left, ["prediction_id"]).equals(_sorted(right, ["prediction_id"]))


def test_at_keeps_rows_at_or_before_it_and_latest_gives_the_census(served, tmp_path):
    table = served.training_set.table
    times = sorted(table.column("index_time").to_pylist())
    moment = times[len(times) // 2]
    _score(served, tmp_path / "upto", at=moment)
    upto = DeltaTable(str(tmp_path / "upto")).to_pyarrow_table()
    assert upto.num_rows == sum(t <= moment for t in times)
    _score(served, tmp_path / "census", at=moment, latest=True)
    census = DeltaTable(str(tmp_path / "census")).to_pyarrow_table().to_pylist()
    keys = [row["patient_key"] for row in census]
    assert len(keys) == len(set(keys)) > 0
    assert all(moment - timedelta(hours=4) < row["index_time"] <= moment for row in census)
    expected = {row["patient_key"] for row in table.to_pylist()
                if moment - timedelta(hours=4) < row["index_time"] <= moment}
    assert set(keys) == expected


def test_a_table_input_scores_like_the_cohort_and_names_a_missing_column(served, tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(served.training_set.table, path)
    from_table = _score(served, tmp_path / "out", cohort=None, input_uri=str(path))
    _score(served, tmp_path / "cohort")
    left = _sorted(DeltaTable(str(tmp_path / "out")).to_pyarrow_table())
    right = _sorted(DeltaTable(str(tmp_path / "cohort")).to_pyarrow_table())
    assert from_table["input"] == "table"
    assert left.column("score").to_pylist() == right.column("score").to_pylist()
    pq.write_table(served.training_set.table.drop_columns(["age"]), path)
    with pytest.raises(InvalidInput, match="age"):
        _score(served, tmp_path / "out2", cohort=None, input_uri=str(path))


def test_operators_may_run_batches_clinicians_need_not(served, tmp_path):
    assert _score(served, tmp_path / "out", actor=OPERATOR, site="north")["sites"] == ["north"]
    with pytest.raises(PermissionDenied):
        _score(served, tmp_path / "out", actor=CLINICIAN)


def test_a_site_without_a_champion_is_refused_before_anything_is_written(served, tmp_path):
    path = tmp_path / "rows.parquet"
    table = served.training_set.table
    pq.write_table(table.set_column(table.column_names.index("site"), "site",
                                    pa.array(["east"] * table.num_rows)), path)
    with pytest.raises(Conflict, match="east"):
        _score(served, tmp_path / "out", cohort=None, input_uri=str(path))
    assert not (tmp_path / "out").exists()


def test_a_crashed_batch_rerun_leaves_one_copy_in_the_archive(served, tmp_path, monkeypatch):
    real_append = scoring_module.append

    def crash(*args, **kwargs):
        raise RuntimeError("killed after the archive was written")

    monkeypatch.setattr(scoring_module, "append", crash)
    served.deploy(2, "shadow", "north")
    with pytest.raises(RuntimeError):
        _score(served, tmp_path / "out")
    first = _archived(tmp_path)
    monkeypatch.setattr(scoring_module, "append", real_append)
    summary = _score(served, tmp_path / "out")
    again = _archived(tmp_path)
    north = sum(site == "north" for site in served.training_set.table.column("site").to_pylist())
    assert summary["archived"] == 0 and summary["predictions"] == summary["rows"] + north
    assert first.num_rows == again.num_rows == summary["predictions"]
    assert _sorted(first, ["prediction_id"]).equals(_sorted(again, ["prediction_id"]))
    ids = again.column("prediction_id").to_pylist()
    assert len(set(ids)) == len(ids)
