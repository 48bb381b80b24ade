"""Value sets: shipped codes, roll-ups, local mappings and the terminology version."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitalops.errors import InvalidInput, NotFound
from vitalops.lake.schema import FACT_KINDS
from vitalops.terminology import (
    ICD10CM,
    LOINC,
    RXNORM,
    SNOMED,
    Terminology,
    load_terminology,
)

# ARCHITECTURE.md "Clinical facts": concept -> (LOINC codes, canonical UCUM unit).
ARCHITECTURE_VITALS_AND_LABS = {
    "heart_rate": (["8867-4"], "/min"),
    "respiratory_rate": (["9279-1"], "/min"),
    "body_temperature": (["8310-5"], "Cel"),
    "systolic_bp": (["8480-6"], "mm[Hg]"),
    "diastolic_bp": (["8462-4"], "mm[Hg]"),
    "spo2": (["2708-6", "59408-5"], "%"),
    "body_weight": (["29463-7"], "kg"),
    "body_height": (["8302-2"], "cm"),
    "wbc": (["6690-2"], "10*3/uL"),
    "hemoglobin": (["718-7"], "g/dL"),
    "platelets": (["777-3"], "10*3/uL"),
    "creatinine": (["2160-0"], "mg/dL"),
    "glucose": (["2345-7"], "mg/dL"),
    "lactate": (["2524-7"], "mmol/L"),
    "sodium": (["2951-2"], "mmol/L"),
    "potassium": (["2823-3"], "mmol/L"),
    "bilirubin_total": (["1975-2"], "mg/dL"),
    "bun": (["3094-0"], "mg/dL"),
    "hba1c": (["4548-4"], "%"),
}
CONDITIONS = {
    "type2_diabetes": ("44054006", "E11"),
    "heart_failure": ("84114007", "I50"),
    "copd": ("13645005", "J44"),
    "ckd": ("709044004", "N18"),
    "hypertension": ("38341003", "I10"),
    "sepsis": ("91302008", "A41"),
}


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return load_terminology()


@pytest.mark.parametrize("name", sorted(ARCHITECTURE_VITALS_AND_LABS))
def test_every_vital_and_lab_resolves_from_its_loinc_codes(terminology: Terminology, name: str) -> None:
    codes, unit = ARCHITECTURE_VITALS_AND_LABS[name]
    for code in codes:
        concept = terminology.concept_for(LOINC, code)
        assert concept is not None and concept.name == name
    concept = terminology.concept(name)
    assert concept.canonical_unit == unit
    assert concept.kind in ("vital", "lab")
    assert concept.plausible_low is not None and concept.plausible_high is not None
    assert concept.plausible_low < concept.plausible_high
    assert {(LOINC, code) for code in codes} <= set(terminology.codes_for(name))


def test_heart_rate_plausible_range_is_the_issue_example(terminology: Terminology) -> None:
    heart_rate = terminology.concept("heart_rate")
    assert (heart_rate.plausible_low, heart_rate.plausible_high) == (20.0, 300.0)
    assert heart_rate.is_plausible(72) and not heart_rate.is_plausible(400) and not heart_rate.is_plausible(5)


def test_bp_panel_is_a_unitless_vital(terminology: Terminology) -> None:
    panel = terminology.concept_for(LOINC, "85354-9")
    assert panel is not None and panel.name == "bp_panel"
    assert panel.kind == "vital" and panel.canonical_unit is None


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_conditions_resolve_from_snomed_and_icd10cm_subcodes(terminology: Terminology, name: str) -> None:
    snomed, category = CONDITIONS[name]
    assert terminology.concept_for(SNOMED, snomed).name == name  # type: ignore[union-attr]
    assert terminology.concept_for(ICD10CM, category).name == name  # type: ignore[union-attr]
    assert terminology.concept_for(ICD10CM, f"{category}.9").name == name  # type: ignore[union-attr]
    assert terminology.concept(name).kind == "condition"


def test_icd10cm_roll_up_takes_dotted_undotted_and_lower_case_codes(terminology: Terminology) -> None:
    for code in ("E11.9", "E119", "e11.65", " E11.22 ", "N18.31", "A41.51"):
        assert terminology.concept_for(ICD10CM, code) is not None, code
    assert terminology.concept_for(ICD10CM, "E11.9").name == "type2_diabetes"  # type: ignore[union-attr]
    assert terminology.concept_for(ICD10CM, "E10.9") is None  # type 1 diabetes is not type 2
    assert terminology.concept_for(ICD10CM, "E1") is None
    # A prefix roll-up is an ICD-10-CM rule, not something other systems get.
    assert terminology.concept_for(SNOMED, "4405400699") is None


def test_rxnorm_products_roll_up_to_their_ingredient(terminology: Terminology) -> None:
    assert terminology.concept_for(RXNORM, "6809").name == "metformin"  # type: ignore[union-attr]
    assert terminology.concept_for(RXNORM, "861007").name == "metformin"  # type: ignore[union-attr]
    assert terminology.concept_for(RXNORM, "313988").name == "furosemide"  # type: ignore[union-attr]
    assert terminology.concept_for(RXNORM, "375983").name == "vancomycin"  # type: ignore[union-attr]
    assert terminology.rxnorm_ingredient("861004") == "6809"
    assert terminology.rxnorm_ingredient("6809") is None
    assert terminology.concept_for(RXNORM, "7512").name == "vasopressor"  # type: ignore[union-attr]
    assert (RXNORM, "861007") in terminology.codes_for("metformin")


def test_procedures_and_kinds(terminology: Terminology) -> None:
    assert terminology.concept_for(SNOMED, "40617009").name == "mechanical_ventilation"  # type: ignore[union-attr]
    assert terminology.concept_for(SNOMED, "108241001").name == "dialysis"  # type: ignore[union-attr]
    assert all(concept.kind in FACT_KINDS for concept in terminology.concepts())
    names = [concept.name for concept in terminology.concepts()]
    assert names == sorted(names)
    assert all(terminology.codes_for(name) for name in names)


def test_unmapped_and_missing_codes_give_none(terminology: Terminology) -> None:
    assert terminology.concept_for(LOINC, "0000-0") is None
    assert terminology.concept_for("http://example.org/local", "8867-4") is None
    assert terminology.concept_for(None, "8867-4") is None
    assert terminology.concept_for(LOINC, None) is None


def test_hl7_oid_system_alias_resolves(terminology: Terminology) -> None:
    assert terminology.concept_for("urn:oid:2.16.840.1.113883.6.1", "2160-0").name == "creatinine"  # type: ignore[union-attr]


def test_unknown_concept_raises_not_found_naming_it(terminology: Terminology) -> None:
    with pytest.raises(NotFound, match="no_such_concept"):
        terminology.concept("no_such_concept")
    with pytest.raises(NotFound, match="no_such_concept"):
        terminology.codes_for("no_such_concept")


LOCAL_SYSTEM = "http://hospital-a.example.org/lab-codes"


def write_csv(tmp_path: Path, text: str, name: str = "local.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_local_mappings_load_and_resolve(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "system,code,concept,unit\n"
        f"{LOCAL_SYSTEM},CREAT-S,creatinine,umol/L\n"
        f"{LOCAL_SYSTEM},HR,heart_rate,\n"
        "\n",
    )
    terminology = load_terminology(path)
    assert terminology.concept_for(LOCAL_SYSTEM, "CREAT-S").name == "creatinine"  # type: ignore[union-attr]
    assert terminology.concept_for(LOCAL_SYSTEM, "HR").name == "heart_rate"  # type: ignore[union-attr]
    assert terminology.local_unit(LOCAL_SYSTEM, "CREAT-S") == "umol/L"
    assert terminology.local_unit(LOCAL_SYSTEM, "HR") is None
    assert (LOCAL_SYSTEM, "CREAT-S") in terminology.codes_for("creatinine")
    # Shipped codes still resolve.
    assert terminology.concept_for(LOINC, "2160-0").name == "creatinine"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        (
            f"system,code,concept\n{LOCAL_SYSTEM},X1,heart_rate\n{LOCAL_SYSTEM},X2,no_such_concept\n",
            3,
            "concept",
        ),
        (f"system,code,concept\n{LOCAL_SYSTEM},,heart_rate\n", 2, "code"),
        ("system,code,concept\n,X1,heart_rate\n", 2, "system"),
        (f"system,code,concept,unit\n{LOCAL_SYSTEM},X1,creatinine,kg\n", 2, "unit"),
        (f"system,code,concept,unit\n{LOCAL_SYSTEM},X1,creatinine,not-a-unit\n", 2, "unit"),
        ("system,code,concept\nhttp://loinc.org,8867-4,glucose\n", 2, "code"),
        (f"system,code\n{LOCAL_SYSTEM},X1\n", 1, "concept"),
        (f"system,code,concept,colour\n{LOCAL_SYSTEM},X1,heart_rate,red\n", 1, "colour"),
    ],
)
def test_bad_local_mappings_fail_naming_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str
) -> None:
    path = write_csv(tmp_path, text, "site_b_mappings.csv")
    with pytest.raises(InvalidInput) as raised:
        load_terminology(path)
    message = raised.value.message
    assert "site_b_mappings.csv" in message
    assert f"line {line}" in message
    assert field in message
    assert raised.value.details["line"] == line
    assert raised.value.details["field"] == field


def test_local_mappings_row_with_wrong_field_count_names_the_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"system,code,concept\n{LOCAL_SYSTEM},X1\n")
    with pytest.raises(InvalidInput, match="line 2"):
        load_terminology(path)


def test_missing_local_mappings_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="nowhere.csv"):
        load_terminology(tmp_path / "nowhere.csv")


def test_version_is_stable_and_changes_with_mappings(tmp_path: Path) -> None:
    shipped = load_terminology().version
    assert shipped == load_terminology().version
    assert len(shipped) == 64
    first = load_terminology(
        write_csv(tmp_path, f"system,code,concept\n{LOCAL_SYSTEM},X1,heart_rate\n", "a.csv")
    )
    same = load_terminology(
        write_csv(tmp_path, f"system,code,concept\n{LOCAL_SYSTEM},X1,heart_rate\n", "b.csv")
    )
    other = load_terminology(
        write_csv(tmp_path, f"system,code,concept\n{LOCAL_SYSTEM},X1,respiratory_rate\n", "c.csv")
    )
    unit = load_terminology(
        write_csv(tmp_path, f"system,code,concept,unit\n{LOCAL_SYSTEM},X1,heart_rate,/min\n", "d.csv")
    )
    assert first.version == same.version  # the file's name or place does not matter, its content does
    assert len({shipped, first.version, other.version, unit.version}) == 4


def test_public_names_are_pinned() -> None:
    import vitalops.terminology as terminology_package

    assert set(terminology_package.__all__) == {
        "ICD10CM",
        "LOINC",
        "RXNORM",
        "SNOMED",
        "UCUM",
        "UNIT_MISSING",
        "UNIT_UNCONVERTIBLE",
        "UNIT_UNKNOWN",
        "Concept",
        "ScaleConversion",
        "Terminology",
        "UnitEquivalence",
        "UnitError",
        "check_unit",
        "load_terminology",
        "normalize_unit_text",
        "storable_unit",
        "to_canonical",
    }
    assert terminology_package.UCUM == "http://unitsofmeasure.org"
