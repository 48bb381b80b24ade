"""Terminology: value sets mapping codes to clinical concepts, and conversion of values to each
concept's canonical UCUM unit."""

from __future__ import annotations

from vitalops.terminology.concepts import (
    ICD10CM,
    LOINC,
    RXNORM,
    SNOMED,
    UCUM,
    Concept,
    ScaleConversion,
    UnitEquivalence,
)
from vitalops.terminology.units import (
    UNIT_MISSING,
    UNIT_UNCONVERTIBLE,
    UNIT_UNKNOWN,
    UnitError,
    check_unit,
    normalize_unit_text,
    storable_unit,
    to_canonical,
)
from vitalops.terminology.value_sets import Terminology, load_terminology

__all__ = [
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
]
