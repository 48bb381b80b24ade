"""PHI stays in its zone: canary identifiers (a name, an MRN, a phone number) planted in every
element type of the supported resources never reach the lake's paths, the facts, the quarantine,
the quality report (JSON and the command line), the ingest logs and output, the metadata
database, the online store or de-identified output.

The canaries sit in site tags, statuses, genders, units, codes and systems of local code systems,
displays, free strings where numbers or dates belong, identifiers, names, telecom, narrative,
notes, reference displays, resource types and value[x] element names; both ingest readers see
them (an Observation file takes the fast path, the rest the per-resource path, and a Bundle).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from vitalops.auth import SYSTEM
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.deid import deidentify_path
from vitalops.ingest.service import ingest_paths, list_batches
from vitalops.lake.facts import FactsStore
from vitalops.lake.quarantine import QuarantineStore
from vitalops.quality.report import quality_report
from vitalops.sites import create_site

NAME, MRN, PHONE = "ZZCANARY-NAME-7731", "MRN-CANARY-99812", "+1-555-0199-CANARY"
MARK = "CANARY"  # in every canary, and in nothing the platform writes by itself
SITE_TAG = "https://vitalops.dev/fhir/site"
LOINC = "http://loinc.org"
LOCAL = f"https://north.hospital.example/{NAME}"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _meta(site: str = "north", version: str = "1") -> dict[str, Any]:
    return {"versionId": version, "lastUpdated": "2024-05-01T12:00:00Z", "tag": [{"system": SITE_TAG, "code": site}],
            "source": f"https://ehr.example/{NAME}"}


def _local(code: str = MRN) -> dict[str, Any]:
    return {"coding": [{"system": LOCAL, "code": code, "display": NAME}], "text": PHONE}


def _subject(pid: str = "p1") -> dict[str, Any]:
    return {"reference": f"Patient/{pid}", "display": NAME}


def _observation(oid: str, **changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "meta": _meta(), "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs", "display": NAME}], "text": NAME}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": NAME}], "text": NAME},
        "subject": _subject(), "encounter": {"reference": "Encounter/e1", "display": PHONE},
        "effectiveDateTime": "2024-05-01T10:00:00Z", "issued": "2024-05-01T10:30:00Z",
        "valueQuantity": {"value": 72, "unit": "beats/min", "system": "http://unitsofmeasure.org", "code": "/min"},
        "performer": [{"display": NAME}], "note": [{"text": f"{NAME} called from {PHONE}"}],
        "text": {"status": "generated", "div": f"<div>{NAME} {MRN}</div>"},
        "identifier": [{"system": "urn:mrn", "value": MRN}],
    }
    resource.update(changes)
    return resource


def _observations() -> list[dict[str, Any]]:
    """Clean lines the fast path takes, and one canary per element type."""
    clean = [_observation(f"ok{i}") for i in range(5)]
    return clean + [
        _observation("c1", meta=_meta(site=NAME)),  # an unregistered site tag
        _observation("c2", status=MRN),  # a status outside its value set
        _observation("c3", valueQuantity={"value": 72, "unit": NAME, "code": PHONE}),  # a unit of a mapped code
        _observation("c4", code=_local(), valueQuantity={"value": 3, "unit": NAME}),  # local code, free-text unit
        _observation("c5", code={"coding": [{"system": LOINC, "code": NAME}]}),  # not in LOINC's syntax
        _observation("c6", valueQuantity={"value": PHONE, "unit": "/min"}),  # a string where a number belongs
        _observation("c7", effectiveDateTime=NAME),  # a string where a date belongs
        _observation("c8", issued=MRN),
        _observation("c9", code={"coding": [{"system": LOINC, "code": "12345-6"}]}, valueQuantity=None,
                     valueCodeableConcept=_local()),  # a coded value under a local system
        _observation("c10", code={"coding": [{"system": LOINC, "code": "12345-6"}]}, valueQuantity=None,
                     valueString=f"{NAME} {PHONE}"),
        _observation("c11", valueQuantity=None, **{f"value{NAME}": 1}),  # an element name that is a canary
        _observation("c12", component=[{"code": _local(PHONE), "valueQuantity": {"value": 1, "unit": NAME}}],
                     valueQuantity=None),
        _observation("c13", subject={"reference": f"Patient/{MRN}", "display": NAME}),  # an id: pseudonymized
        {"resourceType": NAME, "id": "x1", "name": MRN},  # not a FHIR type
        _observation(MRN),  # a resource id: pseudonymized
    ]


def _patients() -> list[dict[str, Any]]:
    person = {
        "resourceType": "Patient", "id": "p1", "meta": _meta(), "gender": "female", "birthDate": "1960-03-04",
        "name": [{"family": NAME, "given": [NAME]}], "telecom": [{"system": "phone", "value": PHONE}],
        "identifier": [{"system": f"urn:{NAME}", "value": MRN}], "address": [{"line": [NAME], "city": NAME,
                                                                             "state": NAME, "postalCode": "02134"}],
        "maritalStatus": _local(), "text": {"status": "generated", "div": f"<div>{NAME}</div>"},
        "extension": [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                       "extension": [{"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238",
                                                                            "code": NAME, "display": NAME}},
                                     {"url": "text", "valueString": NAME}]}],
        "contact": [{"name": {"text": NAME}, "telecom": [{"value": PHONE}]}],
    }
    return [person, {**person, "id": "p2", "gender": NAME}, {**person, "id": "p3", "meta": _meta(site=MRN)}]


def _others() -> list[dict[str, Any]]:
    period = {"start": "2024-05-01T08:00:00Z", "end": "2024-05-03T08:00:00Z"}
    encounter = {
        "resourceType": "Encounter", "id": "e1", "meta": _meta(), "status": "finished", "subject": _subject(),
        "class": {"system": LOCAL, "code": NAME, "display": NAME}, "period": period,
        "serviceType": {"coding": [{"system": LOCAL, "code": MRN, "display": "ICU"}], "text": f"ICU {NAME}"},
        "location": [{"location": {"reference": "Location/l1", "display": f"ICU bed of {NAME}"}, "period": period}],
        "hospitalization": {"dischargeDisposition": _local()}, "reasonCode": [_local()],
    }
    condition = {
        "resourceType": "Condition", "id": "c1", "meta": _meta(), "subject": _subject(), "code": _local(),
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active", "display": NAME}]},
        "onsetDateTime": "2020-01-01", "note": [{"text": NAME}],
    }
    order = {
        "resourceType": "MedicationRequest", "id": "m1", "meta": _meta(), "status": "active", "intent": "order",
        "subject": _subject(), "authoredOn": "2024-05-01T09:00:00Z", "medicationCodeableConcept": _local(),
        "dosageInstruction": [{"text": NAME, "doseAndRate": [{"doseQuantity": {"value": PHONE, "unit": NAME}}]}],
    }
    given = {
        "resourceType": "MedicationAdministration", "id": "a1", "meta": _meta(), "status": "completed",
        "subject": _subject(), "effectiveDateTime": "2024-05-01T09:30:00Z",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "6809", "display": NAME}]},
        "dosage": {"text": NAME, "dose": {"value": 500, "unit": NAME}},
    }
    procedure = {
        "resourceType": "Procedure", "id": "r1", "meta": _meta(), "status": "completed", "subject": _subject(),
        "code": _local(), "performedDateTime": "2024-05-02T10:00:00Z", "note": [{"text": PHONE}],
    }
    bad = [
        {**encounter, "id": "e2", "status": NAME},
        {**condition, "id": "c2", "verificationStatus": {"coding": [{"code": MRN}]}},
        {**order, "id": "m2", "intent": PHONE},
        {**order, "id": "m3", "status": NAME},
        {**given, "id": "a2", "status": MRN},
        {**procedure, "id": "r2", "status": PHONE},
        {**procedure, "id": "r3", "meta": _meta(site=PHONE)},
    ]
    return [encounter, condition, order, given, procedure, *bad]


def _write_feed(folder: Path) -> list[Path]:
    folder.mkdir()
    files = {"Observation.ndjson": _observations(), "Patient.ndjson": _patients(), "Clinical.ndjson": _others()}
    for name, resources in files.items():
        (folder / name).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"urn:uuid:{NAME}", "resource": r} for r in _others()[:3]]}
    (folder / "bundle.json").write_bytes(orjson.dumps(bundle))
    return [folder / name for name in (*files, "bundle.json")]


def _leaks(text: str) -> list[str]:
    return [canary for canary in (NAME, MRN, PHONE, MARK) if canary in text]


def _string_cells(table: pa.Table) -> list[str]:
    return [str(value) for name in table.column_names if pa.types.is_string(table.schema.field(name).type)
            for value in table[name].to_pylist() if value is not None]


@pytest.fixture
def planted(home: Settings, database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture,
            capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    with database.session() as session:
        create_site(session, SYSTEM, "north", tag_values=["north"])
    files = _write_feed(tmp_path / "feed")
    caplog.set_level(logging.DEBUG)
    report = ingest_paths(database, SYSTEM, files, site="north")
    captured = capsys.readouterr()
    return {"files": files, "report": report, "logs": caplog.text + captured.out + captured.err}


def test_no_canary_reaches_the_lake_the_facts_or_the_quarantine(home: Settings, database: Database,
                                                                planted: dict[str, Any]) -> None:
    report = planted["report"]
    assert report.read == report.ingested + report.skipped + report.quarantined
    assert report.ingested >= 10 and report.quarantined >= 15  # the feed really went through both outcomes
    assert report.per_site == {"north": report.ingested}
    lake = Path(home.lake_root)
    paths = [str(path.relative_to(lake)) for path in lake.rglob("*")]
    assert any("site=north" in path for path in paths)
    assert not [path for path in paths if _leaks(path)]
    facts = FactsStore(home.lake_root).dataset().to_table()
    assert facts.num_rows >= 10 and not _leaks("\x00".join(_string_cells(facts)))
    quarantine = QuarantineStore(home.lake_root).read()
    assert quarantine.num_rows == report.quarantined
    assert not _leaks("\x00".join(_string_cells(quarantine)))
    rules = set(quarantine["rule"].to_pylist())
    assert {"site.unregistered", "code.not_in_value_set", "unit.unknown", "value.not_numeric",
            "date.invalid", "resource.unknown_type"} <= rules
    # The rest of what ingest wrote: the batch's counts, the audit trail, the online store, every
    # byte of every file in the home folder (metadata database, Delta logs and their statistics).
    assert not _leaks(orjson.dumps(report.to_dict()).decode())
    assert not _leaks(orjson.dumps(list_batches(database), default=str).decode())
    for path in Path(home.home).rglob("*"):
        if path.is_file():
            assert MARK.encode() not in path.read_bytes(), path.relative_to(home.home)
    assert not _leaks(planted["logs"])


def test_no_canary_reaches_the_quality_report_or_the_command_line(home: Settings, database: Database,
                                                                  planted: dict[str, Any], cli) -> None:
    for k in (1, 20):
        report = quality_report(database, home.lake_root, minimum_patients=k).to_dict()
        assert report["sites"] and not _leaks(orjson.dumps(report, default=str).decode())
    for args in (("quality", "report"), ("quality", "report", "--json"), ("ingest", *map(str, planted["files"])),
                 ("ingest", *map(str, planted["files"]), "--json")):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        assert not _leaks(result.stdout + result.stderr), args


@pytest.mark.parametrize("dates", ["year", "shift", "shift-time"])
def test_no_canary_reaches_deidentified_output(tmp_path: Path, dates: str) -> None:
    files = _write_feed(tmp_path / "feed")
    out = tmp_path / "out"
    for number, file in enumerate(files):
        report = deidentify_path(file, out / str(number), key=b"canary-test-key-0123456789", dates=dates,
                                 site_tags=frozenset({"north"}))
        assert report.written > 0
    written = [path for path in out.rglob("*.ndjson")]
    assert written
    for path in written:
        text = path.read_text()
        assert not _leaks(text), path.name
