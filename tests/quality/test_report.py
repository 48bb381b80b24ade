from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.ingest.fhir_builders import observation, patient
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
    ]
    path = tmp_path / "Observation.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in resources))
    report = ingest_paths(database, SYSTEM, [path], site="qa")
    (site,) = quality_report(database, home.lake_root, batch_id=report.batch).sites
    assert site.implausible["heart_rate"]["out_of_range"] == 1
    assert site.future_dates == 1
    assert site.impossible_dates == 1  # before the patient's birth
    assert site.unmapped_codes == [
        {"source_type": "Observation", "code_system": "http://loinc.org", "code": "99999-9", "facts": 1}
    ]
    assert site.completeness["heart_rate"]["days_with_facts"] == 3
    assert site.freshness["latest_known_at"] is not None
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
