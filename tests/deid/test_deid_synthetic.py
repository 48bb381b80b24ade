"""De-identification of the synthetic hospital: no planted identifier survives, shifts are consistent
per patient, references still resolve; and the governed command."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from vitalops.deid import deidentify_path
from vitalops.synth import IDENTIFIERS_FILE, generate_hospital

KEY = b"synthetic-hospital-test-key-42"
DATE_FIELDS = ("effectiveDateTime", "authoredOn", "onsetDateTime", "recordedDate", "issued", "abatementDateTime")

US_CORE_RACE_ETHNICITY = {
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
}
SITE_TAG = "https://vitalops.dev/fhir/site"


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic") / "hospital"
    generate_hospital(folder, patients=50, sites=["north", "south"], seed=1)
    return folder


@pytest.fixture(scope="module")
def deidentified(hospital: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("deid") / "out"
    report = deidentify_path(hospital, out, key=KEY)
    return out, report.to_dict()


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _moments(resource: dict[str, Any]) -> list[str]:
    found = [resource[name] for name in DATE_FIELDS if isinstance(resource.get(name), str)]
    for name in ("period", "effectivePeriod"):
        found += [v for k, v in (resource.get(name) or {}).items() if k in ("start", "end")]
    if isinstance(resource.get("birthDate"), str):
        found.append(resource["birthDate"])
    return found


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Patient":
        return resource["id"]
    reference = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return reference.removeprefix("Patient/") if reference.startswith("Patient/") else None


def _strings(value: Any, found: set[str]) -> set[str]:
    if isinstance(value, str):
        found.add(value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            found.add(key)
            _strings(inner, found)
    elif isinstance(value, list):
        for inner in value:
            _strings(inner, found)
    return found


def test_no_planted_identifier_survives(hospital: Path, deidentified: tuple[Path, dict[str, Any]]) -> None:
    out, _ = deidentified
    raw = b"".join(path.read_bytes() for path in sorted(out.glob("*.ndjson")))
    strings: set[str] = set()
    for line in raw.splitlines():
        _strings(orjson.loads(line), strings)
    text = "\x00".join(sorted(strings))
    planted = orjson.loads((hospital / IDENTIFIERS_FILE).read_bytes())
    assert sum(len(values) for values in planted.values()) > 300
    for category, values in planted.items():
        for value in values:
            # bounded, so that a ZIP code is not "found" inside a hex pseudonym
            pattern = rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])"
            assert re.search(pattern, text) is None, category
    source_ids = {r["id"] for path in hospital.glob("*.ndjson") for r in _lines(path) if "id" in r}
    tails = {s.rpartition("/")[2] for s in strings}
    assert source_ids.isdisjoint(strings | tails)
    for patient in _lines(out / "Patient.ndjson"):
        assert all(len(a.get("postalCode", "")) <= 3 for a in patient.get("address", []))
        assert {"name", "identifier", "telecom", "text"}.isdisjoint(patient)
        # Only US Core race and ethnicity survive, as codings: never their free-text part.
        assert {e["url"] for e in patient.get("extension", [])} <= US_CORE_RACE_ETHNICITY
        for extension in patient.get("extension", []):
            assert {part["url"] for part in extension["extension"]} <= {"ombCategory", "detailed"}
            assert all(set(part) == {"url", "valueCoding"} for part in extension["extension"])
        assert {tag["system"] for tag in patient["meta"].get("tag", [])} <= {SITE_TAG}


def test_dates_move_by_one_nonzero_offset_per_patient(hospital: Path, deidentified: tuple[Path, Any]) -> None:
    out, _ = deidentified
    offsets: dict[str, set[float]] = defaultdict(set)
    exact: dict[str, set[str]] = defaultdict(set)
    scrubbed_text: dict[str, list[bytes]] = defaultdict(list)
    checked = 0
    for source_file in sorted(hospital.glob("*.ndjson")):
        if not (out / source_file.name).exists():
            continue
        sources, outputs = _lines(source_file), _lines(out / source_file.name)
        assert len(sources) == len(outputs)
        for before, after in zip(sources, outputs, strict=True):
            patient = _patient_of(before)
            assert patient is not None
            exact[patient].update(moment for moment in _moments(before) if len(moment) > 10)
            scrubbed_text[patient].append(orjson.dumps(after))
            for old, new in zip(_moments(before), _moments(after), strict=True):
                if "T" in old:
                    assert len(new) == 10, "shift keeps day precision by default: no time of day"
                    shift = date.fromisoformat(new) - date.fromisoformat(old[:10])
                    offsets[patient].add(shift.total_seconds())
                    checked += 1
    assert checked > 10_000
    for shifts in offsets.values():
        assert len(shifts) == 1, "one offset per patient keeps every interval (in days)"
        (seconds,) = shifts
        assert seconds != 0 and seconds % 86400 == 0 and abs(seconds) <= 365 * 86400
    assert len({next(iter(s)) for s in offsets.values()}) > 10
    for patient, moments in exact.items():
        blob = b"\n".join(scrubbed_text[patient])
        assert not any(moment.encode() in blob for moment in moments)


def test_references_resolve_within_the_output(deidentified: tuple[Path, dict[str, Any]]) -> None:
    out, _ = deidentified
    ids = {path.stem: {r["id"] for r in _lines(path)} for path in out.glob("*.ndjson")}
    resolved = 0
    for path in out.glob("*.ndjson"):
        for resource in _lines(path):
            for match in re.finditer(rb'"reference":"(Patient|Encounter)/([0-9a-f]{32})"', orjson.dumps(resource)):
                assert match.group(2).decode() in ids[match.group(1).decode()]
                resolved += 1
    assert resolved > 20_000


def test_report_adds_up(deidentified: tuple[Path, dict[str, Any]]) -> None:
    out, report = deidentified
    assert report["read"] == report["written"] + report["skipped"]
    assert report["written"] == sum(len(_lines(path)) for path in out.glob("*.ndjson"))
    assert report["actions"]["hash-id"] == report["written"]
    assert report["actions"]["zip3"] == report["written_by_type"]["Patient"] == 50
    assert report["skipped_by_reason"].get("unlisted-resource-type", 0) == 0  # every synthetic type is listed
    drops = {(r["resource_type"], r["element"]) for r in report["by_rule"] if r["action"] == "drop"}
    assert {("Patient", "Patient.name"), ("Patient", "Patient.identifier"), ("Patient", "Patient.telecom")} <= drops


def test_deid_command_is_governed_and_audited(cli, hospital: Path, tmp_path: Path) -> None:
    result = cli("deid", str(hospital), str(tmp_path / "out"), "--dates", "year", "--json")
    assert result.exit_code == 0, result.stderr
    summary = result.json()
    assert summary["dates"] == "year" and summary["written"] > 1000 and summary["actions"]["date"] > 0
    log = cli("audit", "log", "--json").json()
    event = next(e for e in log if e["action"] == "deid.run")
    assert event["object_id"] == summary["run"] and event["payload"]["written"] == summary["written"]
    assert "by_rule" not in event["payload"]
    again = cli("deid", str(hospital), str(tmp_path / "out"), "--json")
    assert again.exit_code == 2 and again.json()["error"]["code"] == "invalid_input"
    assert cli("deid", str(hospital), str(tmp_path / "o2"), "--dates", "month").exit_code == 2
    cli("users", "add", "casey", "--role", "clinician")
    denied = cli("deid", str(hospital), str(tmp_path / "o3"), user="casey")
    assert denied.exit_code == 2 and "may not data:deid" in denied.stderr
    assert not (tmp_path / "o3").exists()
