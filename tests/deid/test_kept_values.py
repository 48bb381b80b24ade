"""De-identification keeps only what validates as what it claims to be: free text planted in kept
elements (a status, a display, a unit, a local code, a string where a number belongs) never
reaches the output; and the README lists exactly what the rules keep."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from vitalops.deid import DEFAULT_RULES_PATH, deidentify_path, load_rules
from vitalops.deid.rules import kept_elements, kept_elements_table
from vitalops.errors import InvalidInput

KEY = b"kept-values-test-key-0123456789"
CANARIES = ("ZZCANARY-NAME-7731", "MRN-CANARY-99812", "+1-555-0199-CANARY")
NAME, MRN, PHONE = CANARIES
README = DEFAULT_RULES_PATH.with_name("README.md")


def _patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient", "id": "p1", "gender": NAME, "active": MRN, "birthDate": "1970-05-01",
        "meta": {"tag": [{"system": "https://vitalops.dev/fhir/site", "code": NAME},
                         {"system": "https://vitalops.dev/fhir/site", "code": "north"}]},
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                      "code": "M", "display": NAME, "version": MRN}], "text": PHONE},
        "address": [{"state": NAME, "country": PHONE, "postalCode": "02134"}],
        "communication": [{"language": {"coding": [{"system": f"urn:{NAME}", "code": "en"}]}, "preferred": "yes"}],
    }


def _observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": "o1", "status": MRN, "subject": {"reference": "Patient/p1",
                                                                              "type": NAME},
        "effectiveDateTime": "2024-03-02T06:00:00-05:00",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": NAME}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"},
                            {"system": "https://north.hospital.example/codes", "code": MRN, "display": NAME},
                            {"system": "http://loinc.org", "code": NAME}]},
        "valueQuantity": {"value": PHONE, "unit": f"{{{NAME}}}/min", "system": "http://unitsofmeasure.org",
                          "code": NAME, "comparator": MRN},
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                       "valueQuantity": {"value": 120, "unit": "mm[Hg]", "code": "mm[Hg]"},
                       "valueInteger": MRN}],
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                        "code": "H", "display": NAME}]}],
    }


def _condition() -> dict[str, Any]:
    return {
        "resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": NAME}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9", "display": NAME}]},
        "onsetAge": {"value": "seventy", "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
    }


def _run(tmp_path: Path, resources: list[dict[str, Any]], **options: Any) -> tuple[dict[str, Any], bytes, Any]:
    source = tmp_path / "in.ndjson"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    report = deidentify_path(source, tmp_path / "out", key=KEY, as_of=date(2025, 6, 1), **options)
    out = {p.stem: [orjson.loads(line) for line in p.read_bytes().splitlines()]
           for p in (tmp_path / "out").glob("*.ndjson")}
    raw = b"".join(p.read_bytes() for p in (tmp_path / "out").glob("*.ndjson"))
    return out, raw, report


def test_free_text_in_kept_elements_never_survives(tmp_path: Path) -> None:
    out, raw, report = _run(tmp_path, [_patient(), _observation(), _condition()])
    for canary in CANARIES:
        assert canary.encode() not in raw
    assert b"CANARY" not in raw and b"Heart rate" not in raw
    patient, observation, condition = out["Patient"][0], out["Observation"][0], out["Condition"][0]
    # the address goes whole: its country is not the US, so its ZIP code is not kept either
    assert set(patient) == {"resourceType", "id", "meta", "birthDate", "maritalStatus"}
    assert patient["meta"]["tag"] == [{"system": "https://vitalops.dev/fhir/site", "code": "north"}]
    assert patient["maritalStatus"] == {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]}
    assert "status" not in observation and "category" not in observation
    assert observation["code"] == {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
    assert observation["valueQuantity"] == {"system": "http://unitsofmeasure.org"}
    assert observation["component"] == [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                                         "valueQuantity": {"value": 120, "unit": "mm[Hg]", "code": "mm[Hg]"}}]
    assert observation["subject"] == {"reference": observation["subject"]["reference"]}
    assert observation["interpretation"] == [{"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}]
    assert "clinicalStatus" not in condition and "value" not in condition.get("onsetAge", {})
    assert condition["code"] == {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}
    totals = report.action_totals()
    for dropped in ("value-set:dropped", "code:dropped", "number:dropped", "unit:dropped", "boolean:dropped",
                    "integer:dropped", "system:dropped", "resource-type:dropped"):
        assert totals.get(dropped, 0) > 0, dropped


def test_registered_site_tags_are_the_only_site_codes_kept(tmp_path: Path) -> None:
    out, raw, _ = _run(tmp_path, [_patient()], site_tags=frozenset({"south"}))
    assert "tag" not in out["Patient"][0].get("meta", {}) and b"north" not in raw


def test_a_value_set_rule_must_name_a_listed_value_set(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[resources.Patient]\nid = "hash-id"\ngender = "value-set:genders"\n')
    with pytest.raises(InvalidInput, match="unknown value set"):
        load_rules(rules)
    rules.write_text('[value_sets]\ngenders = ["female"]\n[resources.Patient]\ngender = "value-set:genders"\n')
    assert load_rules(rules).value_sets == {"genders": frozenset({"female"})}


def test_the_readme_lists_exactly_what_the_rules_keep() -> None:
    rules = load_rules()
    readme = README.read_text(encoding="utf-8")
    start, end = "<!-- kept-elements:start -->\n", "\n<!-- kept-elements:end -->"
    embedded = readme[readme.index(start) + len(start):readme.index(end)]
    assert embedded == kept_elements_table(rules), "regenerate the README table from rules.toml (see README)"
    for owner, element, _ in kept_elements(rules):
        assert f"`{owner}`" in embedded and f"`{element}`" in embedded
    assert "display" not in {element.rsplit(".", 1)[-1] for _, element, _ in kept_elements(rules)}
    assert "`year`" in readme and "**yes**: this is the Safe Harbor mode" in readme
    assert "| `shift` (default)" in readme and "**no**" in readme


def test_the_command_says_which_mode_is_safe_harbor(cli, tmp_path: Path) -> None:
    help_text = cli("deid", "--help").stdout
    flat = " ".join(help_text.split())
    assert "HIPAA Safe Harbor" in flat and "NOT Safe Harbor" in flat
    source = tmp_path / "in.ndjson"
    source.write_bytes(orjson.dumps(_patient()) + b"\n")
    shifted = cli("deid", str(source), str(tmp_path / "a"))
    assert shifted.exit_code == 0, shifted.stderr
    assert "not Safe Harbor" in " ".join(shifted.stdout.split())
    year = cli("deid", str(source), str(tmp_path / "b"), "--dates", "year", "--json")
    assert year.exit_code == 0 and year.json()["safe_harbor_dates"] is True
