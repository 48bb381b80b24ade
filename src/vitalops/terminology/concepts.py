"""What a clinical concept is: its kind, canonical UCUM unit, plausible range and unit factors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The code systems of the shipped value sets, as FHIR ``Coding.system`` URIs.
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"

#: HL7 OIDs that some EHR feeds send instead of the URIs above (HL7 OID registry).
SYSTEM_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
}


@dataclass(frozen=True)
class UnitEquivalence:
    """``1 from_unit = factor to_unit`` for one analyte: a molar <-> mass factor no unit library knows."""

    from_unit: str
    to_unit: str
    factor: float
    source: str


@dataclass(frozen=True)
class ScaleConversion:
    """``canonical = scale * value + offset`` from ``from_unit`` straight to the concept's canonical unit:
    two measurement scales of one analyte (HbA1c IFCC mmol/mol to NGSP %) that unit arithmetic would
    get wrong."""

    from_unit: str
    scale: float
    offset: float
    source: str


@dataclass(frozen=True)
class Concept:
    """A clinical concept that facts are normalized to (``heart_rate``, ``creatinine``, ``sepsis``...).

    ``kind`` is one of ``vitalops.lake.schema.FACT_KINDS``; ``canonical_unit`` is the UCUM unit its
    numeric facts are stored in (None for coded or unitless concepts); the plausible range is in that
    unit and marks values that cannot be physiological.
    """

    name: str
    kind: str
    canonical_unit: str | None
    plausible_low: float | None
    plausible_high: float | None
    description: str
    equivalences: tuple[UnitEquivalence, ...] = ()
    scale_conversions: tuple[ScaleConversion, ...] = ()
    # (scale, offset) or (rule, reason) per raw unit text, filled by ``units.to_canonical``.
    _unit_cache: dict[str | None, tuple[Any, Any, bool]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def is_plausible(self, value: float) -> bool:
        """True when ``value`` (in the canonical unit) lies inside the plausible range, or no range is set."""
        if self.plausible_low is not None and value < self.plausible_low:
            return False
        return not (self.plausible_high is not None and value > self.plausible_high)

    def definition(self) -> dict[str, Any]:
        """The JSON-safe definition hashed into the terminology version."""
        return {
            "name": self.name,
            "kind": self.kind,
            "canonical_unit": self.canonical_unit,
            "plausible_low": self.plausible_low,
            "plausible_high": self.plausible_high,
            "description": self.description,
            "equivalences": [[e.from_unit, e.to_unit, e.factor] for e in self.equivalences],
            "scale_conversions": [[c.from_unit, c.scale, c.offset] for c in self.scale_conversions],
        }
