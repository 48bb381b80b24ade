"""``vitalops dataset build`` end to end: permission, summary, Delta output, audit event."""

from __future__ import annotations

import shutil
from pathlib import Path

from vitalops.audit import list_events
from vitalops.features import demo_spec_path, read_training_set


def _lake_into_home(hospital_lake, settings) -> None:
    target = Path(settings.lake_root)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(hospital_lake.lake_root, target)


def test_dataset_build_writes_summary_table_and_audit(cli, settings, database, hospital_lake, tmp_path) -> None:
    _lake_into_home(hospital_lake, settings)
    out = tmp_path / "readmission"
    result = cli("dataset", "build", str(demo_spec_path("readmission")), str(out), "--json")
    assert result.exit_code == 0, result.stderr
    summary = result.json()
    assert summary["rows"] > 0 and summary["delta_version"] == 0
    assert {site["site"] for site in summary["sites"]} == {"north", "south"}
    assert [m["feature"] for m in summary["missingness"]][0] == "age"
    written = read_training_set(str(out))
    assert written.fingerprint.to_dict() == summary["fingerprint"]
    with database.session() as session:
        events = list_events(session, action="dataset.built")
        assert len(events) == 1
        assert events[0].payload["fingerprint"]["content_sha256"] == summary["fingerprint"]["content_sha256"]


def test_dataset_build_for_people_prints_tables(cli, settings, hospital_lake, tmp_path) -> None:
    _lake_into_home(hospital_lake, settings)
    result = cli("dataset", "build", str(demo_spec_path("readmission")), str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    assert "Prevalence per site" in result.stdout and "Missing before imputation" in result.stdout


def test_dataset_build_needs_permission(cli, settings, make_user, hospital_lake, tmp_path) -> None:
    _lake_into_home(hospital_lake, settings)
    clinician, _ = make_user("clinician")
    result = cli("dataset", "build", str(demo_spec_path("readmission")), str(tmp_path / "out"), "--json",
                 user=clinician.name)
    assert result.exit_code == 2
    assert result.json()["error"]["code"] == "permission_denied"
    assert not (tmp_path / "out").exists()


def test_dataset_build_rejects_a_bad_definition(cli, tmp_path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(demo_spec_path("readmission").read_text().replace("horizon: 30d", "horizon: -30d"))
    result = cli("dataset", "build", str(spec), str(tmp_path / "out"), "--json")
    assert result.exit_code == 2
    assert "bad.yaml: label.horizon" in result.json()["error"]["message"]
