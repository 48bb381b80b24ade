from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc

from vitalops.auth import SYSTEM
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.ingest.normalize import resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.ingest.service import ingest_paths
from vitalops.lake.facts import FactsStore
from vitalops.lake.quarantine import QuarantineStore
from vitalops.quality.report import quality_report
from vitalops.terminology import load_terminology

BAD = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"


def test_every_bad_input_is_handled_or_quarantined_by_file_and_line(home: Settings, database: Database) -> None:
    report = ingest_paths(database, SYSTEM, [BAD], site="lab")
    assert (report.read, report.ingested, report.skipped, report.quarantined) == (150, 144, 0, 6)
    assert report.quarantine_reasons == {
        "bundle.entry_without_resource": 1,
        "date.no_timezone": 1,
        "file.truncated": 1,
        "json.invalid": 1,
        "observation.no_value": 1,
        "resource.unknown_type": 1,
    }
    records = {
        (Path(r["source_file"]).name, r["line"], r["rule"])
        for r in QuarantineStore(home.lake_root).read(report.batch).to_pylist()
    }
    assert records == {
        ("bundle_missing_resource.json", 0, "bundle.entry_without_resource"),
        ("observations.ndjson", 1, "observation.no_value"),
        ("observations.ndjson", 3, "date.no_timezone"),
        ("not_json.ndjson", 2, "json.invalid"),
        ("truncated.ndjson.gz", 141, "file.truncated"),
        ("unknown_type.json", 1, "resource.unknown_type"),
    }
    quarantine = QuarantineStore(home.lake_root).read(report.batch)
    assert not any("bad-" in str(value) for value in quarantine.to_pylist())  # no raw ids
    facts = FactsStore(home.lake_root).dataset().to_table()
    creatinine = facts.filter(pc.equal(facts["concept"], "creatinine")).to_pylist()
    assert [(f["value_num"], f["unit"]) for f in creatinine] == [(1.1, "mg/dL")]

    quality = quality_report(database, home.lake_root, batch_id=report.batch).to_dict()
    (site,) = quality["sites"]
    assert site["site"] == "lab" and site["quarantined"]["date.no_timezone"] == 1
    assert site["unknown_patients"] == 1  # the Bundle's reference to a patient never seen, kept
    assert site["facts"] == facts.num_rows


def test_a_resource_type_that_is_not_text_is_quarantined_not_a_crash() -> None:
    odd = [{"resourceType": ["Observation"], "id": "x1"}, {"resourceType": 7, "id": "x2"}]
    result = resources_to_facts(odd, site="north", pseudonymizer=Pseudonymizer(b"k" * 32),
                                terminology=load_terminology(), known_at_default=datetime(2026, 1, 1, tzinfo=UTC))
    assert result.facts.num_rows == 0
    assert [record.rule for record in result.quarantined] == ["resource.no_type", "resource.no_type"]
