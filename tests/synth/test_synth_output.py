"""The synthetic hospital's output: determinism, structure, bitemporal versions, sites, identifiers."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.synth.synth_reading import code_of, moment, read_ndjson, site_of
from vitalops.errors import InvalidInput
from vitalops.synth import GROUND_TRUTH_FILE, IDENTIFIERS_FILE, RESOURCE_TYPES, SynthSummary, generate_hospital

SITES = ["north", "south", "east"]


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("hospital")
    return out, generate_hospital(out, patients=150, sites=SITES, seed=5)


def _all_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_same_seed_gives_same_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    generate_hospital(tmp_path / "a", patients=40, sites=["x", "y"], seed=11)
    generate_hospital(tmp_path / "b", patients=40, sites=["x", "y"], seed=11)
    generate_hospital(tmp_path / "c", patients=40, sites=["x", "y"], seed=12)
    first, again, other = (_all_bytes(tmp_path / name) for name in "abc")
    assert first == again
    assert first["Observation.ndjson"] != other["Observation.ndjson"]
    assert first["Patient.ndjson"] != other["Patient.ndjson"]


def test_a_patients_history_does_not_depend_on_how_many_others_are_generated(tmp_path: Path) -> None:
    generate_hospital(tmp_path / "small", patients=10, sites=["x", "y"], seed=3)
    generate_hospital(tmp_path / "large", patients=25, sites=["x", "y"], seed=3)
    for resource_type in ("Patient", "Encounter", "Observation"):
        small = (tmp_path / "small" / f"{resource_type}.ndjson").read_bytes()
        large = (tmp_path / "large" / f"{resource_type}.ndjson").read_bytes()
        assert small and large.startswith(small)


def test_summary_counts_match_the_files(hospital: tuple[Path, SynthSummary]) -> None:
    out, summary = hospital
    for resource_type in RESOURCE_TYPES:
        lines = list(read_ndjson(out / f"{resource_type}.ndjson"))
        assert len(lines) == summary.resources[resource_type]
        assert all(r["resourceType"] == resource_type for r in lines)
        per_site: dict[str, int] = defaultdict(int)
        for resource in lines:
            per_site[site_of(resource)] += 1
        assert {s: per_site[s] for s in SITES} == {s: summary.per_site[s][resource_type] for s in SITES}
    assert summary.resources["Procedure"] > 0
    assert set(summary.files) >= {f"{t}.ndjson" for t in RESOURCE_TYPES} | {GROUND_TRUTH_FILE, IDENTIFIERS_FILE}
    assert orjson.loads(orjson.dumps(summary.to_dict()))["patients"] == 150


def test_every_resource_has_version_offset_last_updated_and_site_tag(hospital: tuple[Path, SynthSummary]) -> None:
    out, _ = hospital
    for resource_type in RESOURCE_TYPES:
        for resource in read_ndjson(out / f"{resource_type}.ndjson"):
            assert resource["meta"]["versionId"] in {"1", "2"}
            moment(resource["meta"]["lastUpdated"])  # asserts an offset is present
            assert site_of(resource) in SITES


def test_inpatient_encounters_are_written_in_two_versions(hospital: tuple[Path, SynthSummary]) -> None:
    out, _ = hospital
    versions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    classes = set()
    for encounter in read_ndjson(out / "Encounter.ndjson"):
        classes.add(encounter["class"]["code"])
        versions[encounter["id"]].append(encounter)
    assert classes == {"IMP", "EMER", "AMB"}
    inpatient = {i: v for i, v in versions.items() if v[0]["class"]["code"] == "IMP"}
    assert inpatient
    for pair in inpatient.values():
        first, final = pair
        assert (first["meta"]["versionId"], final["meta"]["versionId"]) == ("1", "2")
        assert first["status"] == "in-progress" and final["status"] == "finished"
        assert "end" not in first["period"] and "hospitalization" not in first
        assert moment(first["meta"]["lastUpdated"]) == moment(first["period"]["start"])
        assert moment(final["meta"]["lastUpdated"]) == moment(final["period"]["end"])
        assert moment(final["period"]["end"]) > moment(final["period"]["start"])
    icu = [pair[1] for pair in inpatient.values() if "partOf" in pair[1]]
    assert icu, "some stays should include an ICU transfer"
    for transfer in icu:
        stay = inpatient[transfer["partOf"]["reference"].split("/")[1]][1]
        assert transfer["serviceType"]["text"] == "Intensive care unit"
        assert "icu" in transfer["location"][0]["location"]["reference"]
        assert moment(stay["period"]["start"]) < moment(transfer["period"]["start"]) < moment(stay["period"]["end"])
    for encounter_versions in versions.values():
        assert len(encounter_versions) in (1, 2)


def test_deaths_are_expired_discharges_and_a_second_patient_version(hospital: tuple[Path, SynthSummary]) -> None:
    out, _ = hospital
    truth = [r for r in read_ndjson(out / GROUND_TRUTH_FILE) if r["kind"] == "stay" and r["died_at"]]
    assert truth, "some stays should end in death"
    finals = {e["id"]: e for e in read_ndjson(out / "Encounter.ndjson") if e["meta"]["versionId"] == "2"}
    patients: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for patient in read_ndjson(out / "Patient.ndjson"):
        patients[patient["id"]].append(patient)
    for record in truth:
        disposition = finals[record["encounter_id"]]["hospitalization"]["dischargeDisposition"]["coding"][0]
        assert disposition == {
            "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition",
            "code": "exp",
            "display": "Expired",
        }
        first, final = patients[record["patient_id"]]
        assert "deceasedDateTime" not in first
        assert moment(final["deceasedDateTime"]) == moment(record["died_at"])
        assert moment(final["meta"]["lastUpdated"]) == moment(record["died_at"])


def test_patients_carry_us_core_demographics_and_identifiers(hospital: tuple[Path, SynthSummary]) -> None:
    out, _ = hospital
    patients = [p for p in read_ndjson(out / "Patient.ndjson") if p["meta"]["versionId"] == "1"]
    assert len(patients) == 150
    ages = []
    for patient in patients:
        urls = [e["url"] for e in patient["extension"]]
        assert urls == [
            "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
        ]
        for extension in patient["extension"]:
            assert extension["extension"][0]["valueCoding"]["system"] == "urn:oid:2.16.840.1.113883.6.238"
        systems = [i["system"] for i in patient["identifier"]]
        assert systems == [f"https://vitalops.dev/fhir/sid/mrn/{site_of(patient)}", "http://hl7.org/fhir/sid/us-ssn"]
        assert patient["gender"] in {"female", "male"}
        assert len(patient["address"][0]["postalCode"]) == 5
        assert patient["managingOrganization"]["reference"] == f"Organization/{site_of(patient)}"
        ages.append(2024 - int(patient["birthDate"][:4]))
    assert sum(age >= 91 for age in ages) >= 2, "some patients must be over 89 for Safe Harbor age grouping"


def test_every_planted_identifier_is_listed(hospital: tuple[Path, SynthSummary]) -> None:
    out, summary = hospital
    listed = orjson.loads((out / IDENTIFIERS_FILE).read_bytes())
    assert summary.planted_identifiers == sum(len(v) for v in listed.values())
    for patient in read_ndjson(out / "Patient.ndjson"):
        name = patient["name"][0]
        assert f"{name['given'][0]} {name['family']}" in listed["names"]
        assert name["family"] in listed["family_names"]
        mrn, ssn = (i["value"] for i in patient["identifier"])
        assert mrn in listed["mrns"] and ssn in listed["ssns"]
        phone, email = (t["value"] for t in patient["telecom"])
        assert phone in listed["phones"] and email in listed["emails"]
        address = patient["address"][0]
        assert address["line"][0] in listed["street_addresses"] and address["postalCode"] in listed["zip_codes"]
    assert len(listed["mrns"]) == 150 and len(listed["ssns"]) == 150


def test_second_site_reports_fahrenheit_and_pounds(hospital: tuple[Path, SynthSummary]) -> None:
    out, _ = hospital
    units: dict[tuple[str, str], set[str]] = defaultdict(set)
    for observation in read_ndjson(out / "Observation.ndjson"):
        if code_of(observation) in {"8310-5", "29463-7"}:
            quantity = observation["valueQuantity"]
            assert quantity["system"] == "http://unitsofmeasure.org"
            units[(site_of(observation), code_of(observation))].add(quantity["code"])
            if quantity["code"] == "[degF]":
                assert 93 < quantity["value"] < 108
            if quantity["code"] == "Cel":
                assert 34 < quantity["value"] < 42
    assert units[("south", "8310-5")] == {"[degF]"} and units[("south", "29463-7")] == {"[lb_av]"}
    for site in ("north", "east"):
        assert units[(site, "8310-5")] == {"Cel"} and units[(site, "29463-7")] == {"kg"}


def test_observations_are_issued_after_they_happen_and_some_labs_arrive_late(
    hospital: tuple[Path, SynthSummary],
) -> None:
    out, _ = hospital
    late = labs = 0
    seen = set()
    for observation in read_ndjson(out / "Observation.ndjson"):
        delay = moment(observation["issued"]) - moment(observation["effectiveDateTime"])
        assert delay > 0
        assert observation["meta"]["lastUpdated"] == observation["issued"]
        category = observation["category"][0]["coding"][0]["code"]
        seen.add(code_of(observation))
        if category == "laboratory":
            labs += 1
            assert delay >= 1800
            late += delay > 12 * 3600
    assert 0.01 < late / labs < 0.1
    assert {
        "8867-4",
        "9279-1",
        "8310-5",
        "59408-5",
        "85354-9",
        "29463-7",
        "6690-2",
        "718-7",
        "777-3",
        "2160-0",
        "2345-7",
        "2524-7",
        "2951-2",
        "2823-3",
        "1975-2",
        "3094-0",
        "4548-4",
    } <= seen


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"patients": 0, "sites": ["a"], "seed": 1}, "patients"),
        ({"patients": 5, "sites": [], "seed": 1}, "sites"),
        ({"patients": 5, "sites": ["a", "a"], "seed": 1}, "sites"),
        ({"patients": 5, "sites": ["bad site"], "seed": 1}, "sites"),
        ({"patients": 5, "sites": ["a"], "seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_invalid_input(tmp_path: Path, arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        generate_hospital(tmp_path, **arguments)
    assert caught.value.details["field"] == field


def test_public_names_are_pinned() -> None:
    import vitalops.synth

    assert sorted(vitalops.synth.__all__) == [
        "DEFAULT_END",
        "DEFAULT_START",
        "GROUND_TRUTH_FILE",
        "IDENTIFIERS_FILE",
        "RESOURCE_TYPES",
        "SCENARIOS",
        "SynthSummary",
        "generate_hospital",
    ]
