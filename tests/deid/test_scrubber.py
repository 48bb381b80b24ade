"""De-identification of hand-written resources: each Safe Harbor rule, the walk, the report."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import orjson
import pytest

from vitalops.deid import DEFAULT_RULES_PATH, deidentify_path, load_rules
from vitalops.deid.dates import shift_date
from vitalops.deid.pseudonyms import date_shift_days, pseudonym
from vitalops.errors import InvalidInput

KEY = b"test-pseudonym-key-0123456789"
AS_OF = date(2025, 6, 1)

PATIENT = {
    "resourceType": "Patient",
    "id": "pat-001",
    "meta": {"lastUpdated": "2024-03-02T08:00:00Z", "versionId": "3", "source": "http://ehr.example.org/x"},
    "text": {"status": "generated", "div": "<div>Jane Q Public, MRN 0048213</div>"},
    "identifier": [
        {"system": "http://hospital.example.org/mrn", "value": "0048213"},
        {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
    ],
    "name": [{"family": "Public", "given": ["Jane", "Quincy"]}],
    "telecom": [
        {"system": "phone", "value": "555-201-7788"},
        {"system": "email", "value": "jane@example.org"},
    ],
    "gender": "female",
    "birthDate": "1961-04-17",
    "address": [
        {
            "line": ["42 Wallaby Way"],
            "city": "Springfield",
            "state": "MA",
            "postalCode": "02134",
            "country": "US",
        },
        {"line": ["7 Low Road"], "state": "NH", "postalCode": "03601"},
    ],
    "maritalStatus": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                "code": "M",
                "display": "Married",
            }
        ],
        "text": "married to John Public",
    },
    "extension": [{"url": "http://example.org/mothers-maiden-name", "valueString": "Smithfield"}],
    "photo": [{"url": "http://ehr.example.org/photo/1"}],
    "_birthDate": {
        "extension": [{"url": "http://example.org/birth-time", "valueDateTime": "1961-04-17T03:12:00Z"}]
    },
}

ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "enc-9",
    "status": "finished",
    "class": {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "code": "IMP",
        "display": "inpatient",
    },
    "subject": {"reference": "Patient/pat-001", "display": "Jane Public"},
    "period": {"start": "2024-03-01T10:15:00-05:00", "end": "2024-03-04T16:40:00-05:00"},
    "location": [{"location": {"reference": "Location/icu-2", "display": "ICU bed 4"}}],
    "identifier": [{"value": "VISIT-77812"}],
}

OBSERVATION = {
    "resourceType": "Observation",
    "id": "obs-5",
    "status": "final",
    "code": {
        "coding": [
            {"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"},
            {"system": "http://hospital.example.org/local", "code": "BP", "display": "BP per Dr Who"},
        ],
        "text": "BP taken by nurse Ratched",
    },
    "subject": {"reference": "http://ehr.example.org/fhir/Patient/pat-001"},
    "encounter": {"reference": "Encounter/enc-9"},
    "effectiveDateTime": "2024-03-02T06:00:00-05:00",
    "issued": "2024-03-02T06:20:00.000Z",
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {
                "value": 128,
                "unit": "mm[Hg]",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {"value": 81, "unit": "mm Hg (Jane's cuff)", "code": "mm[Hg]"},
        },
    ],
    "note": [{"text": "patient anxious, husband John present"}],
    "valueString": "free text that could hold anything",
}


def _write_input(folder: Path, resources: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[dict]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    for resource_type, items in by_type.items():
        (folder / f"{resource_type}.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in items))
    return folder


def _read_output(folder: Path) -> dict[str, list[dict]]:
    return {
        path.stem: [orjson.loads(line) for line in path.read_bytes().splitlines()]
        for path in sorted(folder.glob("*.ndjson"))
    }


def _run(tmp_path: Path, resources: list[dict], **options) -> tuple[dict[str, list[dict]], dict, bytes]:
    source = _write_input(tmp_path / "in", resources)
    report = deidentify_path(source, tmp_path / "out", key=KEY, as_of=AS_OF, **options)
    output = _read_output(tmp_path / "out")
    raw = b"".join(p.read_bytes() for p in (tmp_path / "out").glob("*.ndjson"))
    return output, report.to_dict(), raw


def test_direct_identifiers_and_free_text_are_removed(tmp_path: Path) -> None:
    output, report, raw = _run(tmp_path, [PATIENT, ENCOUNTER, OBSERVATION])
    for planted in [
        b"Jane",
        b"Public",
        b"Quincy",
        b"0048213",
        b"123-45-6789",
        b"555-201-7788",
        b"jane@example.org",
        b"Wallaby",
        b"Springfield",
        b"02134",
        b"03601",
        b"1961-04-17",
        b"Smithfield",
        b"ICU bed",
        b"VISIT-77812",
        b"Ratched",
        b"anxious",
        b"Dr Who",
        b"ehr.example.org",
        b"pat-001",
        b"enc-9",
        b"obs-5",
        b"free text",
        b"2024-03-01",
        b"2024-03-02",
        b"2024-03-04",
        b"cuff",
        b"married to",
    ]:
        assert planted not in raw, planted
    patient = output["Patient"][0]
    assert set(patient) == {"resourceType", "id", "meta", "gender", "birthDate", "address", "maritalStatus"}
    assert patient["meta"] == {
        "lastUpdated": shift_date("2024-03-02T08:00:00Z", date_shift_days(KEY, "pat-001"))[:10]  # day precision
    }
    assert patient["address"] == [
        {"state": "MA", "postalCode": "021", "country": "US"},
        {"state": "NH", "postalCode": "000"},
    ]
    # displays are dropped, even a terminology's
    assert patient["maritalStatus"] == {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]
    }
    observation = output["Observation"][0]
    # the local coding is dropped whole: its code is not in a known system's syntax
    assert observation["code"] == {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}
    assert observation["component"][0]["valueQuantity"]["unit"] == "mm[Hg]"
    assert "unit" not in observation["component"][1]["valueQuantity"]
    assert report["actions"]["drop"] > 0 and report["actions"]["zip3"] == 2


def test_references_are_rewritten_with_the_same_pseudonyms_as_ids(tmp_path: Path) -> None:
    output, _, _ = _run(tmp_path, [PATIENT, ENCOUNTER, OBSERVATION])
    patient_id = output["Patient"][0]["id"]
    encounter = output["Encounter"][0]
    observation = output["Observation"][0]
    assert patient_id == pseudonym(KEY, "Patient", "pat-001")
    assert encounter["subject"] == {"reference": f"Patient/{patient_id}"}
    assert observation["subject"] == {"reference": f"Patient/{patient_id}"}  # absolute URL made relative
    assert observation["encounter"] == {"reference": f"Encounter/{encounter['id']}"}
    assert encounter["location"] == [
        {"location": {"reference": f"Location/{pseudonym(KEY, 'Location', 'icu-2')}"}}
    ]


def test_dates_shift_consistently_per_patient_and_never_by_zero(tmp_path: Path) -> None:
    output, _, _ = _run(tmp_path, [PATIENT, ENCOUNTER, OBSERVATION], dates="shift-time")
    offset = date_shift_days(KEY, "pat-001")
    assert offset != 0 and -365 <= offset <= 365
    encounter = output["Encounter"][0]
    observation = output["Observation"][0]

    def moment(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    original = moment(ENCOUNTER["period"]["start"]) - moment(OBSERVATION["effectiveDateTime"])
    shifted = moment(encounter["period"]["start"]) - moment(observation["effectiveDateTime"])
    assert original == shifted
    assert (moment(observation["issued"]) - moment(OBSERVATION["issued"])).days == offset
    assert output["Patient"][0]["birthDate"] == shift_date("1961-04-17", offset)
    offsets = {date_shift_days(KEY, f"p{i}") for i in range(2000)}
    assert 0 not in offsets and min(offsets) >= -365 and max(offsets) <= 365 and len(offsets) > 600


def test_shift_keeps_dates_at_day_precision_by_default(tmp_path: Path) -> None:
    output, report, raw = _run(tmp_path, [PATIENT, ENCOUNTER, OBSERVATION])
    offset = date_shift_days(KEY, "pat-001")
    observation = output["Observation"][0]
    assert observation["effectiveDateTime"] == shift_date("2024-03-02", offset)
    assert output["Encounter"][0]["period"] == {"start": shift_date("2024-03-01", offset),
                                                "end": shift_date("2024-03-04", offset)}
    assert b"T" not in b"".join(orjson.dumps(d).replace(b'"resourceType"', b"") for d in (observation["issued"],))
    for time_of_day in (b"10:15", b"16:40", b"06:00", b"06:20", b"08:00"):
        assert time_of_day not in raw
    assert report["dates"] == "shift" and report["safe_harbor_dates"] is False
    assert report["dates_note"].startswith("not Safe Harbor")


def test_year_mode_truncates_every_date(tmp_path: Path) -> None:
    output, report, _ = _run(tmp_path, [PATIENT, ENCOUNTER, OBSERVATION], dates="year")
    assert output["Patient"][0]["birthDate"] == "1961"
    assert output["Encounter"][0]["period"] == {"start": "2024", "end": "2024"}
    assert output["Observation"][0]["effectiveDateTime"] == "2024"
    assert report["dates"] == "year" and report["safe_harbor_dates"] is True
    assert report["dates_note"].startswith("HIPAA Safe Harbor")


def test_patients_aged_90_or_more_are_grouped(tmp_path: Path) -> None:
    old = {**PATIENT, "id": "pat-old", "birthDate": "1931-02-10"}
    almost = {**PATIENT, "id": "pat-89", "birthDate": "1935-07-01"}
    output, _, raw = _run(tmp_path, [old, almost])
    births = {p["id"]: p["birthDate"] for p in output["Patient"]}
    assert births[pseudonym(KEY, "Patient", "pat-old")] == "1935"  # the year that makes them 90 on AS_OF
    assert births[pseudonym(KEY, "Patient", "pat-89")] == shift_date(
        "1935-07-01", date_shift_days(KEY, "pat-89")
    )
    assert b"1931" not in raw
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/pat-old"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "84114007"}]},
        "onsetAge": {"value": 93, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
    }
    output, _, _ = _run(tmp_path / "again", [condition])
    assert output["Condition"][0]["onsetAge"]["value"] == 90


def test_unknown_types_modifier_extensions_and_bad_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    modified = {
        **OBSERVATION,
        "id": "obs-mod",
        "component": [
            {
                **OBSERVATION["component"][0],
                "modifierExtension": [{"url": "http://example.org/negated", "valueBoolean": True}],
            }
        ],
    }
    implicit = {**OBSERVATION, "id": "obs-implicit", "implicitRules": "http://example.org/rules"}
    unlisted = {"resourceType": "Communication", "id": "m1", "payload": [{"contentString": "call Jane"}]}
    source = _write_input(tmp_path / "in", [PATIENT, OBSERVATION, modified, implicit, unlisted])
    with (source / "Observation.ndjson").open("ab") as handle:
        handle.write(b"{not json\n")
    report = deidentify_path(source, tmp_path / "out", key=KEY, as_of=AS_OF)
    assert report.read == 6
    assert report.written == 2
    assert dict(report.skipped) == {
        "unknown-modifier-extension": 2,
        "unlisted-resource-type": 1,
        "unreadable": 1,
    }
    assert report.read == report.written + sum(report.skipped.values())
    assert report.written_by_type == {"Patient": 1, "Observation": 1}
    assert not (tmp_path / "out" / "Communication.ndjson").exists()


def test_report_counts_each_rule_per_resource_type(tmp_path: Path) -> None:
    _, report, _ = _run(tmp_path, [PATIENT, {**PATIENT, "id": "pat-002"}, ENCOUNTER])
    by_rule = {(r["resource_type"], r["element"], r["action"]): r["count"] for r in report["by_rule"]}
    assert by_rule[("Patient", "Patient.id", "hash-id")] == 2
    assert by_rule[("Patient", "Patient.name", "drop")] == 2
    assert by_rule[("Patient", "Patient.identifier", "drop")] == 2
    assert by_rule[("Patient", "Patient.address.postalCode", "zip3")] == 4
    assert by_rule[("Patient", "Patient.address.line", "drop")] == 4
    assert by_rule[("Encounter", "Encounter.subject.display", "drop")] == 1
    assert by_rule[("Encounter", "Encounter.subject.reference", "reference")] == 1
    assert report["written_by_type"] == {"Encounter": 1, "Patient": 2}


def test_resources_without_a_patient_get_year_dates(tmp_path: Path) -> None:
    orphan = {**OBSERVATION, "id": "obs-orphan", "subject": {"reference": "Group/g1"}}
    output, _, _ = _run(tmp_path, [orphan])
    assert output["Observation"][0]["effectiveDateTime"] == "2024"


def test_bad_rules_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[resources.Patient]\nid = "hash-id"\nname = "kep"\n')
    with pytest.raises(InvalidInput, match="unknown action"):
        load_rules(rules)
    rules.write_text('[resources.Patient]\naddress = "Adress"\n')
    with pytest.raises(InvalidInput, match="unknown type"):
        load_rules(rules)
    source = _write_input(tmp_path / "in", [PATIENT])
    with pytest.raises(InvalidInput, match="dates"):
        deidentify_path(source, tmp_path / "out1", key=KEY, dates="month")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.ndjson").write_bytes(b"")
    with pytest.raises(InvalidInput, match="new or empty"):
        deidentify_path(source, tmp_path / "full", key=KEY)


def test_custom_rules_can_keep_more_but_only_what_they_list(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[resources.Patient]\nid = "hash-id"\ngender = "keep"\n')
    source = _write_input(tmp_path / "in", [PATIENT, ENCOUNTER])
    report = deidentify_path(source, tmp_path / "out", key=KEY, rules=rules, as_of=AS_OF)
    output = _read_output(tmp_path / "out")
    assert output == {
        "Patient": [
            {"resourceType": "Patient", "id": pseudonym(KEY, "Patient", "pat-001"), "gender": "female"}
        ]
    }
    assert report.skipped["unlisted-resource-type"] == 1


def test_an_allowed_modifier_extension_is_kept_with_its_element(tmp_path: Path) -> None:
    negated = {"url": "http://example.org/negated", "valueBoolean": True}
    modified = {**OBSERVATION, "component": [{**OBSERVATION["component"][0], "modifierExtension": [negated]}]}
    rules = tmp_path / "rules.toml"
    text = DEFAULT_RULES_PATH.read_text().replace(
        "allowed_modifier_extensions = []", 'allowed_modifier_extensions = ["http://example.org/negated"]'
    )
    rules.write_text(text)
    source = _write_input(tmp_path / "in", [modified])
    report = deidentify_path(source, tmp_path / "out", key=KEY, rules=rules, as_of=AS_OF)
    assert report.written == 1
    assert _read_output(tmp_path / "out")["Observation"][0]["component"][0]["modifierExtension"] == [negated]


def test_us_core_race_and_ethnicity_codings_and_the_site_tag_are_kept_and_nothing_else(tmp_path: Path) -> None:
    race = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
    omb = {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}
    patient = {
        "resourceType": "Patient", "id": "p-race", "gender": "female", "birthDate": "1970-05-01",
        "meta": {"lastUpdated": "2024-01-01T00:00:00Z",
                 "tag": [{"system": "https://vitalops.dev/fhir/site", "code": "north"},
                         {"system": "http://example.org/ward", "code": "MRN-4471"}]},
        "extension": [
            {"url": race, "extension": [{"url": "ombCategory", "valueCoding": omb},
                                        {"url": "text", "valueString": "White, lives on Elm Street"}]},
            {"url": "http://example.org/mothers-maiden-name", "valueString": "Smithfield"},
        ],
    }
    outputs, _, raw = _run(tmp_path, [patient])
    kept = outputs["Patient"][0]
    coded = {"system": omb["system"], "code": omb["code"]}  # the display is dropped, as every display is
    assert kept["extension"] == [{"url": race, "extension": [{"url": "ombCategory", "valueCoding": coded}]}]
    assert kept["meta"]["tag"] == [{"system": "https://vitalops.dev/fhir/site", "code": "north"}]
    for leaked in (b"Elm Street", b"Smithfield", b"MRN-4471"):
        assert leaked not in raw
