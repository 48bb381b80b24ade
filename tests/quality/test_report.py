from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.ingest.fhir_builders import condition, observation, patient
from vitalops.auth import SYSTEM
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.errors import NotFound
from vitalops.ingest.service import ingest_paths
from vitalops.quality.report import quality_report


def test_implausible_future_and_unmapped_values_are_counted(home: Settings, database: Database, tmp_path: Path) -> None:
    resources = [
        patient("q1", birth="1970-01-01"),
        observation("h1", pid="q1", value=72),
        observation("h2", pid="q1", value=500),  # heart rate far outside 20-300 /min
        observation("h3", pid="q1", value=70, effective="2999-01-01T00:00:00Z", issued=None),
        observation("h4", pid="q1", value=70, effective="1960-01-01T00:00:00Z", issued=None),
        observation("x1", pid="q1", code="99999-9", value=1, unit="1"),
        {**observation("l1", pid="q1", value=5, unit="1"),
         "code": {"coding": [{"system": "https://qa.hospital.example/lab", "code": "GLU-LOCAL"}]}},
    ]
    path = tmp_path / "Observation.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in resources))
    report = ingest_paths(database, SYSTEM, [path], site="qa")
    (site,) = quality_report(database, home.lake_root, batch_id=report.batch, minimum_patients=1).sites
    assert site.implausible["heart_rate"]["out_of_range"] == 1
    assert site.future_dates == 1
    assert site.impossible_dates == 1  # before the patient's birth
    assert site.unmapped_codes == [
        {"source_type": "Observation", "code_system": "http://loinc.org", "code": "99999-9", "facts": 1}
    ]
    assert site.codes_absent == 1  # the local code is not stored: counted, never listed
    assert "GLU-LOCAL" not in orjson.dumps(site).decode()
    assert site.completeness["heart_rate"]["days_with_facts"] == 3
    assert site.freshness["latest_known_day"] is not None
    with pytest.raises(NotFound):
        quality_report(database, home.lake_root, batch_id="batch_nope")


def test_quality_cli_json_and_tables(cli, tmp_path: Path) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(orjson.dumps(patient("c1")))
    assert cli("ingest", str(path), "--json").exit_code == 0
    result = cli("quality", "report", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["sites"][0]["patients"] == 1
    table = cli("quality", "report")
    assert table.exit_code == 0 and "Data quality" in table.stdout
    assert "Dates of birth are shown as years" in table.stdout


def _cohort(tmp_path: Path, births: list[str]) -> Path:
    resources: list[dict] = []
    for number, birth in enumerate(births):
        pid = f"k{number}"
        resources.append(patient(pid, birth=birth))
        day = 1 + number
        resources.append(observation(f"hr{number}", pid=pid, effective=f"2024-05-{day:02d}T10:00:00Z",
                                     issued=f"2024-05-{day:02d}T11:00:00Z", updated=f"2024-05-{day:02d}T12:00:00Z"))
    resources.append(observation("rare", pid="k0", code="99999-9", value=1, unit="1"))
    path = tmp_path / "cohort.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in resources))
    return path


def test_no_figure_equals_one_patients_value(home: Settings, database: Database, tmp_path: Path, cli) -> None:
    births = ["1921-02-03", "1930-06-07", "1950-01-01", "1960-03-15", "1970-07-04", "1980-11-30", "1999-12-31"]
    report = ingest_paths(database, SYSTEM, [_cohort(tmp_path, births)], site="qa")
    (site,) = quality_report(database, home.lake_root, batch_id=report.batch, minimum_patients=3).sites
    # Birth years only: the 3rd earliest and 3rd latest, so each end is shared by 3 patients.
    assert site.birth_years == {"patients": 7, "first_year": 1950, "last_year": 1970}
    assert "birth" not in site.completeness and "sex" not in site.completeness
    heart_rate = site.completeness["heart_rate"]
    # One patient per day: no day is shown, the span's ends are the 3rd first and 3rd last days.
    assert heart_rate["latest_days"] == {} and heart_rate["days_suppressed"] == 7
    assert (heart_rate["first_day"], heart_rate["last_day"]) == ("2024-05-03", "2024-05-05")
    assert site.freshness["latest_effective_day"] == "2024-05-05"
    # The unmapped code one patient has is counted, not named.
    assert site.unmapped_codes == [{"source_type": None, "code_system": None, "code": None, "facts": 1,
                                    "codes": 1, "note": "codes each held by fewer than 3 patients"}]
    as_json = orjson.dumps(quality_report(database, home.lake_root, minimum_patients=3).to_dict()).decode()
    assert not [birth for birth in births if birth in as_json], as_json
    assert "99999-9" not in as_json
    # Ages over 89 are one category (Safe Harbor); fewer patients than k leave the ends blank.
    (old,) = quality_report(database, home.lake_root, batch_id=report.batch, minimum_patients=1).sites
    assert old.birth_years["first_year"].endswith("or earlier") and old.birth_years["last_year"] == 1999
    (few,) = quality_report(database, home.lake_root, batch_id=report.batch, minimum_patients=8).sites
    assert few.birth_years == {"patients": 7, "first_year": None, "last_year": None}
    assert few.freshness["latest_known_day"] is None
    printed = cli("quality", "report")
    assert printed.exit_code == 0 and not any(birth in printed.stdout for birth in births)


def test_conditions_dated_by_their_record_and_observations_without_effective_are_counted(
    home: Settings, database: Database, tmp_path: Path
) -> None:
    issued_only = observation("h2", pid="q1")
    del issued_only["effectiveDateTime"]  # issued only: quarantined, not dated by its release
    observations = tmp_path / "Observation.ndjson"  # the fast path's input
    observations.write_bytes(b"\n".join(orjson.dumps(r) for r in [observation("h1", pid="q1"), issued_only]))
    conditions = tmp_path / "Condition.ndjson"
    conditions.write_bytes(b"\n".join(orjson.dumps(r) for r in [
        patient("q1"),
        condition("c1", pid="q1", recorded="2024-02-01"),
        condition("c2", pid="q1", recorded="2024-02-02"),
        condition("c3", pid="q1", onset="2020-01-01", recorded="2024-02-03"),
        {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/q1"},
         "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                   "code": "6809"}]}},  # no start time: required.effective too
    ]))
    report = ingest_paths(database, SYSTEM, [observations, conditions], site="qa")
    (site,) = quality_report(database, home.lake_root, batch_id=report.batch, minimum_patients=1).sites
    assert site.conditions_dated_recorded == 2
    assert site.observations_without_effective == 1
    assert site.quarantined == {"required.effective": 2}  # the rule also holds the order without a start
    (whole_lake,) = quality_report(database, home.lake_root, minimum_patients=1).sites
    assert whole_lake.conditions_dated_recorded == 2
