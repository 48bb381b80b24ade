from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from vitalops.fhir.readers import iter_resources


def _obs(i: int) -> dict:
    return {"resourceType": "Observation", "id": f"o{i}", "subject": {"reference": "Patient/p1"}}


def test_ndjson_plain_and_gzip_name_file_and_line(tmp_path: Path) -> None:
    lines = [orjson.dumps(_obs(i)) for i in range(3)]
    plain = tmp_path / "Observation.ndjson"
    plain.write_bytes(b"\n".join(lines) + b"\n\n")
    packed = tmp_path / "Observation.ndjson.gz"
    packed.write_bytes(gzip.compress(b"\n".join(lines)))
    for path in (plain, packed):
        records = list(iter_resources(path))
        assert [r.line for r in records] == [1, 2, 3]
        assert all(r.file == str(path) and r.error is None for r in records)
        assert records[2].resource["id"] == "o2"


def test_bad_json_line_becomes_an_error_record(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(orjson.dumps(_obs(1)) + b"\n{not json\n" + orjson.dumps(_obs(2)) + b"\n")
    records = list(iter_resources(path))
    assert [(r.line, r.error) for r in records] == [(1, None), (2, "json.invalid"), (3, None)]


def test_truncated_gzip_yields_what_was_read_then_an_error(tmp_path: Path) -> None:
    body = b"\n".join(orjson.dumps(_obs(i)) for i in range(2000)) + b"\n"
    packed = gzip.compress(body)
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(packed[: len(packed) // 2])
    records = list(iter_resources(path))
    assert records[-1].error == "file.truncated"
    good = [r for r in records if r.error is None]
    assert 0 < len(good) < 2000


def test_bundle_entries_resolve_urn_uuid_references(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:aaa", "resource": {"resourceType": "Patient"}},
            {"fullUrl": "urn:uuid:bbb", "resource": {**_obs(1), "subject": {"reference": "urn:uuid:aaa"}}},
            {"request": {"method": "POST", "url": "Observation"}},
            {"request": {"method": "DELETE", "url": "Observation/x"}},
        ],
    }
    path = tmp_path / "b.json"
    path.write_bytes(orjson.dumps(bundle))
    records = list(iter_resources(path))
    assert records[0].resource == {"resourceType": "Patient", "id": "aaa"}
    assert records[1].resource["subject"]["reference"] == "Patient/aaa"
    errors = [(r.line, r.error) for r in records[2:]]
    assert errors == [(2, "bundle.entry_without_resource"), (3, "bundle.delete_entry")]


def test_directory_reads_supported_files_in_order(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_bytes(orjson.dumps(_obs(2)))
    (tmp_path / "a.ndjson").write_bytes(orjson.dumps(_obs(1)))
    (tmp_path / "notes.txt").write_text("ignored")
    assert [r.resource["id"] for r in iter_resources(tmp_path)] == ["o1", "o2"]
