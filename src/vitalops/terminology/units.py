"""Unit normalization and conversion to each concept's canonical UCUM unit.

UCUM units are parsed with ``ucumvert`` (a UCUM grammar that builds ``pint`` quantities), so unit
arithmetic, prefixes, ``10*3`` style factors and affine temperatures come from the library. What a
library cannot know is kept as data on the concept: molar <-> mass factors per analyte and
conversions between measurement scales (HbA1c). Nothing is guessed: a unit that does not parse is
``unit.unknown``, one that cannot be converted is ``unit.unconvertible``, a missing unit on a
numeric concept is ``unit.missing``.

Conversions are cached per concept and raw unit text as ``canonical = scale * value + offset``, so
after the first call a conversion costs a dict lookup and one multiply-add.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction
from typing import Any

from vitalops.errors import InvalidInput
from vitalops.terminology.concepts import Concept

UNIT_UNKNOWN = "unit.unknown"
UNIT_UNCONVERTIBLE = "unit.unconvertible"
UNIT_MISSING = "unit.missing"

# Non-UCUM spellings seen in EHR feeds whose meaning is unambiguous, keyed by lower-cased text with
# single spaces. Deliberately absent: bare "F"/"C" (farad and coulomb in UCUM) and "K" alone.
_EHR_SPELLINGS = {
    "mg/dl": "mg/dL",
    "g/dl": "g/dL",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "µmol/l": "umol/L",
    "μmol/l": "umol/L",
    "mcmol/l": "umol/L",
    "meq/l": "meq/L",
    "g/l": "g/L",
    "mg/l": "mg/L",
    "ug/l": "ug/L",
    "mcg/l": "ug/L",
    "ng/ml": "ng/mL",
    "bpm": "/min",
    "beats/min": "/min",
    "beats per minute": "/min",
    "breaths/min": "/min",
    "br/min": "/min",
    "/min": "/min",
    "1/min": "/min",
    "per min": "/min",
    "degf": "[degF]",
    "deg f": "[degF]",
    "°f": "[degF]",
    "f°": "[degF]",
    "fahrenheit": "[degF]",
    "degc": "Cel",
    "deg c": "Cel",
    "°c": "Cel",
    "celsius": "Cel",
    "cel": "Cel",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "pound": "[lb_av]",
    "pounds": "[lb_av]",
    "oz": "[oz_av]",
    "in": "[in_i]",
    "inch": "[in_i]",
    "inches": "[in_i]",
    "mmhg": "mm[Hg]",
    "mm hg": "mm[Hg]",
    "k/ul": "10*3/uL",
    "k/mcl": "10*3/uL",
    "k/mm3": "10*3/uL",
    "thou/ul": "10*3/uL",
    "x10^3/ul": "10*3/uL",
    "x10e3/ul": "10*3/uL",
    "10^3/ul": "10*3/uL",
    "10e3/ul": "10*3/uL",
    "x10^9/l": "10*9/L",
    "x10e9/l": "10*9/L",
    "10^9/l": "10*9/L",
    "10e9/l": "10*9/L",
    "/mcl": "/uL",
    "cells/ul": "/uL",
    "cells/mcl": "/uL",
    "percent": "%",
    "%": "%",
}

#: A feed with free text in its unit field must not grow the cache without bound.
_MAX_CACHED_UNITS_PER_CONCEPT = 1_000
_SNAP_DENOMINATOR = 1_000_000
_SNAP_TOLERANCE = 1e-14
_SPACES = re.compile(r"\s+")
_SPACES_AROUND_SLASH = re.compile(r"\s*/\s*")


class UnitError(InvalidInput):
    """A value's unit cannot be brought to its concept's canonical unit; ``rule`` is a stable id
    (``unit.unknown``, ``unit.unconvertible``, ``unit.missing``) that quarantine records carry.
    The message names the concept and the rule, never the unit's text: feeds put free text (a
    name, a note) anywhere, and quarantine reasons and logs must not carry it."""

    code = "unit_error"

    def __init__(self, message: str, *, rule: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={"rule": rule, **(details or {})})
        self.rule = rule


def normalize_unit_text(unit: str) -> str:
    """The UCUM spelling of ``unit``: stray whitespace trimmed and common EHR spellings whose meaning
    is unambiguous mapped (``"mg/dl "`` -> ``"mg/dL"``, ``"bpm"`` -> ``"/min"``, ``"lbs"`` ->
    ``"[lb_av]"``). Anything else is returned trimmed and otherwise unchanged, for the UCUM parser
    to accept or reject."""
    text = _SPACES.sub(" ", unit.strip())
    mapped = _EHR_SPELLINGS.get(text.lower())
    if mapped is not None:
        return mapped
    compact = _SPACES_AROUND_SLASH.sub("/", text)
    mapped = _EHR_SPELLINGS.get(compact.lower())
    return mapped if mapped is not None else compact


@functools.cache
def _ucum_registry() -> Any:
    # Imported here: building the UCUM grammar and pint registry takes about half a second, which only
    # code that converts units should pay.
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


@functools.lru_cache(maxsize=4096)
def _parse(ucum: str) -> Any:
    """The pint quantity of one UCUM unit; raises UnitError(unit.unknown) when it does not parse."""
    try:
        return _ucum_registry().from_ucum(ucum)
    except Exception as exc:  # ucumvert raises lark and pint errors of several kinds
        raise UnitError("the unit is not a valid UCUM unit", rule=UNIT_UNKNOWN) from exc


@functools.lru_cache(maxsize=4096)
def storable_unit(unit: object) -> str | None:
    """The UCUM spelling of ``unit`` (``normalize_unit_text``) when it parses as UCUM and carries
    no annotation, else None: what a fact of an unmapped code may keep of a Quantity's unit. A UCUM
    annotation (``{...}``) is free text by definition, and so is anything that does not parse."""
    if type(unit) is not str:
        return None
    text = normalize_unit_text(unit)
    if not text or "{" in text or "}" in text:
        return None
    try:
        _parse(text)
    except UnitError:
        return None
    return text


def _uses_equivalents(quantity: Any) -> bool:
    # UCUM defines eq as 1 mol whatever the ion's charge, which is only right for monovalent ions; an
    # eq <-> mol conversion therefore needs a per-analyte declaration.
    return "equivalent" in str(quantity.units)


def _affine(source: Any, target: Any) -> tuple[float, float] | None:
    """(scale, offset) taking values in ``source`` to ``target``, or None when their dimensions differ."""
    if source.dimensionality != target.dimensionality:
        return None
    if _uses_equivalents(source) != _uses_equivalents(target):
        return None
    registry = _ucum_registry()

    def convert(x: float) -> float:
        if source.magnitude == 1:
            quantity = registry.Quantity(x, source.units)
        else:
            quantity = registry.Quantity(x * source.magnitude, source.units)
        return float(quantity.to(target.units).magnitude) / float(target.magnitude)

    offset = convert(0.0)
    scale = (convert(1.0e6) - offset) / 1.0e6 if offset else convert(1.0)
    return _snapped(scale), _snapped(offset)


def _snapped(number: float) -> float:
    """``number`` moved to the nearest simple fraction when one lies within 1e-14 of it (relative).

    Offset units pass through kelvin in pint, so 5/9 and -160/9 come back a few ulps off and
    98.6 [degF] would give 37.000000000000036 Cel. The move is below any measurable difference, so it
    cannot change a clinical value; it only makes exact conversions print exactly.
    """
    if number == 0.0 or not math.isfinite(number):
        return number
    simple = float(Fraction(number).limit_denominator(_SNAP_DENOMINATOR))
    return simple if abs(simple - number) <= _SNAP_TOLERANCE * abs(number) else number


def _compose(first: tuple[float, float], then: tuple[float, float]) -> tuple[float, float]:
    return then[0] * first[0], then[0] * first[1] + then[1]


def _conversion_for(concept: Concept, unit: str) -> tuple[float, float]:
    """(scale, offset) from ``unit`` to the concept's canonical unit; raises UnitError."""
    canonical = concept.canonical_unit
    assert canonical is not None
    source = _parse(unit)
    target = _parse(canonical)
    for conversion in concept.scale_conversions:
        declared = _parse(conversion.from_unit)
        if declared.units == source.units and declared.magnitude == source.magnitude:
            return conversion.scale, conversion.offset
    direct = _affine(source, target)
    if direct is not None:
        return direct
    for equivalence in concept.equivalences:
        a, b = _parse(equivalence.from_unit), _parse(equivalence.to_unit)
        forward = (_affine(source, a), _affine(b, target), (equivalence.factor, 0.0))
        backward = (_affine(source, b), _affine(a, target), (1.0 / equivalence.factor, 0.0))
        for into, out_of, factor in (forward, backward):
            if into is not None and out_of is not None:
                return _compose(_compose(into, factor), out_of)
    raise UnitError(
        f"the unit cannot be converted to {canonical} for concept {concept.name}",
        rule=UNIT_UNCONVERTIBLE,
        details={"concept": concept.name},
    )


def _cache_entry(concept: Concept, unit: str | None) -> tuple[Any, Any, bool]:
    """(scale, offset, True) or (rule, reason, False) for a raw unit text."""
    if unit is not None and not isinstance(unit, str):
        return UNIT_UNKNOWN, f"the unit of concept {concept.name} is not text", False
    text = normalize_unit_text(unit) if unit is not None else ""
    if concept.canonical_unit is None:
        if text in ("", "1"):
            return 1.0, 0.0, True
        return (
            UNIT_UNCONVERTIBLE,
            f"concept {concept.name} has no unit, but the value came with one",
            False,
        )
    if not text:
        return (
            UNIT_MISSING,
            f"a value of concept {concept.name} has no unit (expected {concept.canonical_unit})",
            False,
        )
    try:
        scale, offset = _conversion_for(concept, text)
    except UnitError as exc:
        if exc.rule == UNIT_UNKNOWN:
            return exc.rule, f"the unit is not a valid UCUM unit (concept {concept.name})", False
        return exc.rule, exc.message, False
    return scale, offset, True


def to_canonical(concept: Concept, value: float, unit: str | None) -> float:
    """``value`` expressed in ``concept.canonical_unit``.

    ``unit`` is the raw unit text of the source (normalized here). Raises UnitError with rule
    ``unit.missing`` (no unit on a numeric concept), ``unit.unknown`` (not UCUM) or
    ``unit.unconvertible`` (no declared path to the canonical unit); the reason names the concept,
    never the value or the unit's text.
    """
    try:
        entry = concept._unit_cache.get(unit)
    except TypeError:  # an unhashable unit from a malformed resource
        entry = (UNIT_UNKNOWN, f"the unit of concept {concept.name} is not text", False)
    if entry is None:
        entry = _cache_entry(concept, unit)
        if len(concept._unit_cache) < _MAX_CACHED_UNITS_PER_CONCEPT:
            concept._unit_cache[unit] = entry
    first, second, ok = entry
    if ok:
        return value * first + second  # type: ignore[no-any-return]
    raise UnitError(second, rule=first, details={"concept": concept.name})


def canonical_affine(concept: Concept, unit: str | None) -> tuple[float, float]:
    """(scale, offset) such that ``to_canonical(concept, v, unit) == v * scale + offset`` for every
    number ``v``, for code that converts a column of values at once; raises UnitError as
    ``to_canonical`` does."""
    entry = concept._unit_cache.get(unit) if unit is None or isinstance(unit, str) else None
    if entry is None:
        entry = _cache_entry(concept, unit)
    first, second, ok = entry
    if ok:
        return first, second
    raise UnitError(second, rule=first, details={"concept": concept.name})


def check_unit(concept: Concept, unit: str | None) -> None:
    """Returns None when values of ``concept`` in ``unit`` can be converted; raises UnitError when not."""
    to_canonical(concept, 0.0, unit)
