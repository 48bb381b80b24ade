from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from vitalops.auth import SYSTEM
from vitalops.core.settings import Settings, get_settings
from vitalops.db import Database
from vitalops.errors import InvalidInput, PermissionDenied
from vitalops.ingest.service import ingest_paths, list_batches
from vitalops.lake.facts import FactsStore
from vitalops.synth import RESOURCE_TYPES


def test_synthetic_hospital_ingests_with_counts_that_add_up_and_rerun_adds_nothing(
    home: Settings, database: Database, synth_export: list[Path]
) -> None:
    first = ingest_paths(database, SYSTEM, synth_export)
    assert first.read == first.ingested + first.skipped + first.quarantined
    assert first.quarantined == 0 and first.facts > first.read
    assert set(first.per_site) == {"north", "south"}
    store = FactsStore(home.lake_root)
    assert store.dataset().count_rows() == first.facts
    again = ingest_paths(database, SYSTEM, synth_export)
    assert again.facts == 0 and again.read == first.read and again.duplicates >= first.facts
    assert store.dataset().count_rows() == first.facts
    batches = list_batches(database)
    assert [b["status"] for b in batches] == ["completed", "completed"]
    assert batches[1]["counts"]["facts"] == first.facts
    with database.session() as session:
        actions = session.execute(
            sa.text("SELECT action, payload_json FROM audit_events WHERE object_id = :id ORDER BY seq"),
            {"id": first.batch},
        ).all()
    assert [a for a, _ in actions] == ["ingest.batch.started", "ingest.batch.completed"]
    assert orjson.loads(actions[1][1])["read"] == first.read


def test_ingest_needs_permission_and_existing_paths(
    home: Settings, database: Database, make_user, synth_export: list[Path], tmp_path: Path
) -> None:
    clinician, _ = make_user("clinician")
    with pytest.raises(PermissionDenied):
        ingest_paths(database, clinician, synth_export)
    with pytest.raises(InvalidInput):
        ingest_paths(database, SYSTEM, [tmp_path / "missing.ndjson"])
    assert len(RESOURCE_TYPES) >= 5


def test_cli_ingest_json(cli, synth_export: list[Path]) -> None:
    result = cli("ingest", *map(str, synth_export[:1]), "--site", "x", "--json")
    assert result.exit_code == 0, result.stderr
    body = result.json()
    assert body["read"] == body["ingested"] + body["skipped"] + body["quarantined"] > 0
    assert body["batch"].startswith("batch_")
    assert cli("ingest", "--json").exit_code == 2


def test_the_hospitals_local_code_mappings_apply_at_ingest(home, database, tmp_path, monkeypatch) -> None:
    resource = {
        "resourceType": "Observation", "id": "lac1", "status": "final",
        "meta": {"versionId": "1", "lastUpdated": "2025-03-01T10:00:00Z"},
        "code": {"coding": [{"system": "https://north.hospital.example/lab", "code": "LACT-ART"}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-03-01T09:00:00Z",
        "valueQuantity": {"value": 2.1, "unit": "mmol/L"},
    }
    feed = tmp_path / "Observation.ndjson"
    feed.write_bytes(orjson.dumps(resource) + b"\n")
    mappings = tmp_path / "local-codes.csv"
    mappings.write_text("system,code,concept\nhttps://north.hospital.example/lab,LACT-ART,lactate\n")
    monkeypatch.setenv("VITALOPS_LOCAL_CODES_FILE", str(mappings))
    get_settings.cache_clear()
    ingest_paths(database, SYSTEM, [feed], site="north")
    facts = FactsStore(get_settings().lake_root).dataset().to_table().to_pylist()
    assert [(f["concept"], f["value_num"], f["unit"]) for f in facts] == [("lactate", 2.1, "mmol/L")]


def test_site_tags_must_name_a_registered_site(home: Settings, database: Database, tmp_path: Path, cli) -> None:
    from tests.ingest.fhir_builders import meta, observation, patient

    canary = "ZZCANARY-NAME-7731"
    tagged = [
        observation("o1", meta=meta("2024-05-01T09:30:00Z", site="north")),
        observation("o2", meta=meta("2024-05-01T09:30:00Z", site=canary)),  # the fast path's file
        {**patient("p1"), "meta": meta("2024-01-01T00:00:00Z", site=canary)},  # the per-resource path
    ]
    observations, patients = tmp_path / "Observation.ndjson", tmp_path / "Patient.ndjson"
    observations.write_bytes(b"\n".join(orjson.dumps(r) for r in tagged[:2]) + b"\n")
    patients.write_bytes(orjson.dumps(tagged[2]) + b"\n")
    report = ingest_paths(database, SYSTEM, [observations, patients], site="qa")
    assert report.per_site == {"north": 1}
    assert report.quarantine_reasons == {"site.unregistered": 2}
    from vitalops.lake.quarantine import QuarantineStore

    quarantined = QuarantineStore(home.lake_root).read(report.batch).to_pylist()
    assert {(q["site"], q["rule"]) for q in quarantined} == {("qa", "site.unregistered")}
    assert all("meta.tag" in q["reason"] and canary not in q["reason"] for q in quarantined)
    lake_paths = [str(p) for p in Path(home.lake_root).rglob("*")]
    assert lake_paths and not any(canary in p for p in lake_paths)
    assert set(FactsStore(home.lake_root).dataset().to_table()["site"].to_pylist()) == {"north"}
    # --site must be registered too, and the error says how to register one.
    with pytest.raises(InvalidInput, match="not registered"):
        ingest_paths(database, SYSTEM, [observations], site="nowhere")
    refused = cli("ingest", str(observations), "--site", "nowhere")
    assert refused.exit_code == 2 and "not registered" in refused.stderr + refused.stdout


def test_reingesting_bad_records_adds_nothing_to_the_quarantine(home: Settings, database: Database) -> None:
    from vitalops.lake.quarantine import QuarantineStore

    bad = Path(__file__).parents[1] / "data" / "bad_inputs" / "observations.ndjson"
    first = ingest_paths(database, SYSTEM, [bad], site="north")
    assert first.quarantined > 0
    store = QuarantineStore(home.lake_root)
    rows = store.read().num_rows
    assert rows == first.quarantined
    again = ingest_paths(database, SYSTEM, [bad], site="north")
    assert again.quarantined == first.quarantined  # the run still says what it saw
    assert store.read().num_rows == rows  # and adds no record twice


def test_cli_ingest_exits_1_when_every_record_is_quarantined(cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken.ndjson"
    broken.write_text('{"resourceType": "Observation", "status": "final"\nnot json at all\n', encoding="utf-8")
    result = cli("ingest", str(broken), "--site", "x", "--json")
    assert result.exit_code == 1, result.stderr
    assert result.json()["quarantined"] == result.json()["read"] == 2
    assert "quarantined" in result.stderr
