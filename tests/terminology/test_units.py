"""Unit normalization and conversion to canonical UCUM units."""

from __future__ import annotations

import timeit

import pytest

from vitalops.errors import InvalidInput
from vitalops.terminology import (
    UNIT_MISSING,
    UNIT_UNCONVERTIBLE,
    UNIT_UNKNOWN,
    Terminology,
    UnitError,
    check_unit,
    load_terminology,
    normalize_unit_text,
    to_canonical,
)
from vitalops.terminology.units import canonical_affine


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return load_terminology()


@pytest.mark.parametrize(
    ("concept", "value", "unit", "expected"),
    [
        ("creatinine", 88.42, "umol/L", 1.0),
        ("creatinine", 1.0, "mg/dL", 1.0),
        ("creatinine", 10.0, "mg/L", 1.0),
        ("body_temperature", 98.6, "[degF]", 37.0),
        ("body_temperature", 212.0, "[degF]", 100.0),
        ("body_temperature", 310.15, "K", 37.0),
        ("body_weight", 70 / 0.45359237, "[lb_av]", 70.0),
        ("body_weight", 70_000.0, "g", 70.0),
        ("body_height", 70.0, "[in_i]", 177.8),
        ("glucose", 5.5, "mmol/L", 99.088),
        ("bilirubin_total", 17.1, "umol/L", 1.0),
        ("bun", 0.357, "mmol/L", 1.0),
        ("hba1c", 48.0, "mmol/mol", 0.09148 * 48 + 2.152),
        ("hba1c", 0.065, "1", 6.5),
        ("spo2", 0.97, "1", 97.0),
        ("wbc", 7500.0, "/uL", 7.5),
        ("wbc", 7.5, "10*9/L", 7.5),
        ("platelets", 250.0, "K/uL", 250.0),
        ("sodium", 140.0, "mEq/L", 140.0),
        ("hemoglobin", 140.0, "g/L", 14.0),
        ("heart_rate", 80.0, "bpm", 80.0),
        ("heart_rate", 2.0, "Hz", 120.0),
        ("systolic_bp", 120.0, "mmHg", 120.0),
        ("systolic_bp", 16.0, "kPa", 16_000 / 133.322387415),  # conventional mmHg
    ],
)
def test_conversions_give_exact_numbers(
    terminology: Terminology, concept: str, value: float, unit: str, expected: float
) -> None:
    assert to_canonical(terminology.concept(concept), value, unit) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_canonical_affine_is_the_map_to_canonical_applies(terminology: Terminology) -> None:
    cases = [
        ("creatinine", "umol/L"),
        ("body_temperature", "[degF]"),
        ("body_weight", "[lb_av]"),
        ("spo2", "1"),
        ("glucose", "mmol/L"),
        ("heart_rate", "bpm"),
        ("creatinine", "mg/dl "),
    ]
    for name, unit in cases:
        concept = terminology.concept(name)
        scale, offset = canonical_affine(concept, unit)
        for value in (0.0, -0.0, 1.0, 36.6, 98.6, 123.456, 1e300, 7):
            assert value * scale + offset == to_canonical(concept, value, unit)  # the same float, bit for bit
    with pytest.raises(UnitError) as raised:
        canonical_affine(terminology.concept("creatinine"), "kg")
    assert raised.value.rule == UNIT_UNCONVERTIBLE
    with pytest.raises(UnitError):
        canonical_affine(terminology.concept("creatinine"), 5)  # type: ignore[arg-type]


def test_exact_figures_from_the_brief(terminology: Terminology) -> None:
    assert to_canonical(terminology.concept("creatinine"), 88.42, "umol/L") == 1.0
    assert to_canonical(terminology.concept("body_temperature"), 98.6, "[degF]") == 37.0
    assert to_canonical(terminology.concept("glucose"), 5.5, "mmol/L") == pytest.approx(99.088, abs=1e-12)
    # 154.324 lb is 70.000189 kg (1 lb = 0.45359237 kg exactly): 70.0 to the gram.
    assert to_canonical(terminology.concept("body_weight"), 154.324, "[lb_av]") == pytest.approx(70.0, abs=1e-3)


def test_hba1c_ifcc_is_not_converted_as_a_plain_ratio(terminology: Terminology) -> None:
    # Unit arithmetic alone would give 4.8 % for 48 mmol/mol; the IFCC-NGSP equation gives 6.54 %.
    assert to_canonical(terminology.concept("hba1c"), 48.0, "mmol/mol") == pytest.approx(6.54304)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mg/dl ", "mg/dL"),
        ("  mg/dl", "mg/dL"),
        ("mg / dl", "mg/dL"),
        ("MG/DL", "mg/dL"),
        ("bpm", "/min"),
        ("beats/min", "/min"),
        ("%", "%"),
        ("degF", "[degF]"),
        ("°F", "[degF]"),
        ("lbs", "[lb_av]"),
        ("mmHg", "mm[Hg]"),
        ("mm Hg", "mm[Hg]"),
        ("K/uL", "10*3/uL"),
        ("x10^9/L", "10*9/L"),
        ("µmol/L", "umol/L"),
        ("mEq/L", "meq/L"),
        ("10*3/uL", "10*3/uL"),
        ("F", "F"),  # farad in UCUM: never read as Fahrenheit
        ("furlongs", "furlongs"),
    ],
)
def test_normalize_unit_text(text: str, expected: str) -> None:
    assert normalize_unit_text(text) == expected


def test_stray_spaces_convert(terminology: Terminology) -> None:
    assert to_canonical(terminology.concept("glucose"), 100.0, " mg/dl ") == 100.0


@pytest.mark.parametrize(
    ("concept", "unit", "rule"),
    [
        ("hemoglobin", "mmol/L", UNIT_UNCONVERTIBLE),  # molar hemoglobin needs a declared factor
        ("creatinine", "kg", UNIT_UNCONVERTIBLE),
        ("heart_rate", "mm[Hg]", UNIT_UNCONVERTIBLE),
        ("body_temperature", "F", UNIT_UNCONVERTIBLE),  # farad
        ("lactate", "mg/dL", UNIT_UNCONVERTIBLE),
        ("creatinine", "furlongs per fortnight", UNIT_UNKNOWN),
        ("creatinine", "mg/dL)", UNIT_UNKNOWN),
        ("creatinine", None, UNIT_MISSING),
        ("creatinine", "", UNIT_MISSING),
        ("creatinine", "   ", UNIT_MISSING),
        ("sepsis", "mg", UNIT_UNCONVERTIBLE),
    ],
)
def test_bad_units_raise_with_rule(terminology: Terminology, concept: str, unit: str | None, rule: str) -> None:
    for _ in range(2):  # the second call answers from the cache and must fail the same way
        with pytest.raises(UnitError) as raised:
            to_canonical(terminology.concept(concept), 123.456, unit)
        assert raised.value.rule == rule
        assert isinstance(raised.value, InvalidInput)
        assert concept in raised.value.message
        assert "123.456" not in raised.value.message
        assert raised.value.details["rule"] == rule


def test_unitless_concepts_take_no_unit(terminology: Terminology) -> None:
    assert to_canonical(terminology.concept("bp_panel"), 1.0, None) == 1.0
    check_unit(terminology.concept("sepsis"), None)
    check_unit(terminology.concept("creatinine"), "umol/L")
    with pytest.raises(UnitError):
        check_unit(terminology.concept("creatinine"), "kg")


def test_error_message_never_quotes_the_unit(terminology: Terminology) -> None:
    for free_text in ("ZZCANARY-NAME-7731", "see note: patient reports " + "x" * 200, "kg"):
        for concept in ("creatinine", "sepsis"):
            with pytest.raises(UnitError) as raised:
                to_canonical(terminology.concept(concept), 1.0, free_text)
            assert free_text not in raised.value.message and "CANARY" not in raised.value.message
            assert concept in raised.value.message


def test_cached_conversion_is_fast(terminology: Terminology) -> None:
    creatinine = terminology.concept("creatinine")
    to_canonical(creatinine, 88.42, "umol/L")
    calls = 20_000
    seconds = min(timeit.repeat(lambda: to_canonical(creatinine, 88.42, "umol/L"), number=calls, repeat=3))
    assert seconds / calls < 2e-6


def test_many_distinct_unit_texts_stay_correct(terminology: Terminology) -> None:
    heart_rate = terminology.concept("heart_rate")
    for index in range(1_500):
        with pytest.raises(UnitError):
            to_canonical(heart_rate, 80.0, f"free text {index}")
    assert to_canonical(heart_rate, 80.0, "/min") == 80.0
    assert len(heart_rate._unit_cache) <= 1_000


@pytest.mark.parametrize("unit", [42, ["mg/dL"], {"code": "mg/dL"}])
def test_a_unit_that_is_not_text_is_unknown(terminology: Terminology, unit: object) -> None:
    with pytest.raises(UnitError) as raised:
        to_canonical(terminology.concept("creatinine"), 1.0, unit)  # type: ignore[arg-type]
    assert raised.value.rule == UNIT_UNKNOWN
