"""``vitalops score`` and ``vitalops predictions archive`` through the real entry point."""

from __future__ import annotations

import shutil

from deltalake import DeltaTable

from vitalops.features import demo_spec_path
from vitalops.lake.archive import PredictionArchive


def test_score_a_cohort_from_the_command_line_then_archive(cli, served, make_user, monkeypatch, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(served.lake.lake_root, lake)  # the session's lake stays without an archive
    monkeypatch.setenv("VITALOPS_LAKE_URI", str(lake))
    _, key = make_user("data_scientist", "dana")
    monkeypatch.setenv("VITALOPS_API_KEY", key)
    out = tmp_path / "scores"
    cohort = str(demo_spec_path("deterioration"))
    result = cli("score", "deterioration", "--cohort", cohort, "--output", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    body = result.json()
    assert body["rows"] == served.training_set.table.num_rows == DeltaTable(str(out)).to_pyarrow_table().num_rows
    assert body["archived"] == body["predictions"] == PredictionArchive(str(lake)).dataset().count_rows()
    people = cli("score", "deterioration", "--cohort", cohort, "--output", str(out), "--site", "north")
    assert people.exit_code == 0 and "Batch scoring" in people.stdout and "champion" in people.stdout
    usage = cli("score", "deterioration", "--cohort", cohort, "--output", str(out), "--latest")
    assert usage.exit_code == 2 and "--latest needs --at" in usage.stderr
    _, operator = make_user("operator", "otto")
    monkeypatch.setenv("VITALOPS_API_KEY", operator)
    archived = cli("predictions", "archive", "--older-than", "7d", "--json")
    assert archived.exit_code == 0, archived.stderr
    assert archived.json()["moved"] == 0  # nothing was logged online here
    _, clinician = make_user("clinician", "casey")
    monkeypatch.setenv("VITALOPS_API_KEY", clinician)
    denied = cli("score", "deterioration", "--cohort", cohort, "--output", str(out))
    assert denied.exit_code == 2 and "may not data:ingest" in denied.stderr
