"""Observation -> vital, lab or other observation facts: the hot path of bulk ingest.

One fact for the Observation's own value and one per ``component`` with a value (the blood
pressure panel becomes ``systolic_bp`` and ``diastolic_bp`` facts). Numeric values are stored in
the concept's canonical unit; a unit that cannot be converted quarantines the resource.

``known_at`` is meta.lastUpdated, else the ingest time, and ``issued_at`` is ``issued`` (when the
result was released to clinicians): a first version is known at ``issued``, a later one (an
amendment or correction keeps the original ``issued``) at its own lastUpdated, never before the
version it follows (``vitalops.lake.versions``). Per the specification an Observation with no value must say why in
``dataAbsentReason`` (skipped as "data absent"); one with neither is quarantined. A panel that only
groups other Observations (``hasMember``) is skipped: its members carry the values.
"""

from __future__ import annotations

from typing import Any

from vitalops.ingest.extract_common import (
    Context,
    Rejected,
    Retracted,
    Row,
    Skipped,
    bound_code,
    encounter_key,
    instant,
    known_at,
    optional_instant,
    patient_key,
    pick_coding,
    resource_id,
    site_of,
    source_version,
)
from vitalops.terminology import UnitError, storable_unit, to_canonical
from vitalops.terminology.code_systems import OBSERVATION_STATUS

#: Shared with the fast path (``columnar_observations``), which must decide
#: as this module does.
SKIPPED_STATUSES = frozenset({"entered-in-error", "cancelled"})
#: The statuses of Observations that yield facts (the rest of the FHIR code list retracts).
FACT_STATUSES = OBSERVATION_STATUS - SKIPPED_STATUSES
OBSERVATION_STATUS_VALUE_SET = "http://hl7.org/fhir/ValueSet/observation-status"
CATEGORY_KINDS = {"vital-signs": "vital", "laboratory": "lab"}
NUMERIC_KINDS = frozenset({"vital", "lab", "observation"})
#: The value[x] types of an R4 Observation (and its components): only these names are ever
#: repeated in a skip or quarantine reason, since an element name is input too.
VALUE_TYPES = frozenset({
    "valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean", "valueInteger", "valueRange",
    "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod",
})


def _category_kind(resource: dict[str, Any]) -> str:
    for category in resource.get("category") or ():
        for coding in category.get("coding") or ():
            kind = CATEGORY_KINDS.get(coding.get("code"))
            if kind is not None:
                return kind
    return "observation"


def _quantity(quantity: Any, concept: Any, where: str) -> tuple[float, str | None, str | None]:
    """(value, unit, source unit) of a Quantity: value and unit in the concept's canonical unit when
    the code is mapped; the source unit is the unit as sent (``code``, else ``unit``) in its UCUM
    spelling, or None when that is free text (``storable_unit``)."""
    if not isinstance(quantity, dict):
        raise Rejected("value.invalid", f"{where} is not a Quantity")
    value = quantity.get("value")
    if type(value) is not float and type(value) is not int:
        raise Rejected("value.not_numeric", f"{where}.value is missing or not a number")
    raw_unit = quantity.get("code") or quantity.get("unit")
    source_unit = storable_unit(raw_unit)
    if concept is None:
        return float(value), source_unit, source_unit
    try:
        return to_canonical(concept, value, raw_unit), concept.canonical_unit, source_unit
    except UnitError as exc:
        raise Rejected(exc.rule, f"{where}.unit: {exc.message}") from None


_Value = tuple[float | None, str | None, str | None, str | None]


def _value(holder: dict[str, Any], concept: Any, where: str, ctx: Context) -> _Value | None:
    """(value_num, value_code, unit, source unit) of a value[x], or None when the element has no value."""
    quantity = holder.get("valueQuantity")
    if quantity is not None:
        number, unit, source_unit = _quantity(quantity, concept, f"{where}valueQuantity")
        return number, None, unit, source_unit
    coded = holder.get("valueCodeableConcept")
    if coded is not None:
        _, code, _ = pick_coding(coded, ctx)
        if code is not None:
            return None, code, None, None
        raise Skipped("coded value without a known code")
    if "valueBoolean" in holder:
        return None, "true" if holder["valueBoolean"] else "false", None, None
    if "valueInteger" in holder:
        number, unit, source_unit = _quantity({"value": holder["valueInteger"]}, concept, f"{where}valueInteger")
        return number, None, unit, source_unit
    for name in holder:
        if name.startswith("value") and name[5:6].isupper():
            element = name if name in VALUE_TYPES else "value[x]"
            if concept is not None and concept.canonical_unit:
                raise Rejected(
                    "value.not_numeric", f"{where}{element} of numeric concept {concept.name} is not a number"
                )
            # Free text, ranges, ratios, sampled data...: not facts (free text may hold PHI).
            raise Skipped(f"value type {element} not ingested")
    return None


def observation_facts(resource: dict[str, Any], ctx: Context, index: int, rows: list[Row]) -> str:
    """Append the facts of one Observation to ``rows``; return its site.

    Raises Skipped or Rejected (the resource adds no facts then).
    """
    status = resource.get("status")
    if status in SKIPPED_STATUSES:
        raise Retracted(f"status {status}")
    if not status:
        raise Rejected("required.status", "Observation has no status")
    bound_code(status, FACT_STATUSES, "Observation.status", OBSERVATION_STATUS_VALUE_SET)
    source_id = ctx.pseudonyms.resource_key("Observation", resource_id(resource, "Observation"))
    patient = patient_key(resource, ctx)
    site = site_of(resource, ctx)
    end = None
    effective = resource.get("effectiveDateTime") or resource.get("effectiveInstant")
    if effective is not None:
        effective = instant(effective, "effective[x]")
    else:
        period = resource.get("effectivePeriod")
        if isinstance(period, dict) and period.get("start"):
            effective = instant(period["start"], "effectivePeriod.start")
            end = instant(period["end"], "effectivePeriod.end") if period.get("end") else None
        else:
            raise Rejected("required.effective", "Observation has no effective time")
    issued = optional_instant(resource.get("issued"), "issued")
    known = known_at(resource, ctx)
    version = source_version(resource)
    encounter = encounter_key(resource, ctx)
    category_kind = _category_kind(resource)
    added = absent = 0

    def add(ordinal: int, holder: dict[str, Any], where: str) -> bool:
        system, code, concept = pick_coding(holder.get("code"), ctx)
        found = _value(holder, concept, where, ctx)
        if found is None:
            return False
        number, coded, unit, source_unit = found
        kind = concept.kind if concept is not None and concept.kind in NUMERIC_KINDS else category_kind
        rows.append(
            (
                site,
                patient,
                kind,
                concept.name if concept is not None else None,
                system,
                code,
                number,
                coded,
                unit,
                status,
                encounter,
                effective,
                end,
                known,
                "Observation",
                source_id,
                version,
                ordinal,
                index,
                issued,
                source_unit,
                None,
            )
        )
        return True

    if add(0, resource, ""):
        added += 1
    for ordinal, component in enumerate(resource.get("component") or (), start=1):
        try:
            if add(ordinal, component, f"component[{ordinal - 1}]."):
                added += 1
            elif component.get("dataAbsentReason") is not None:
                absent += 1
        except Skipped:
            continue
    if added == 0:
        if absent or resource.get("dataAbsentReason") is not None:
            raise Skipped("data absent")
        if resource.get("hasMember"):
            raise Skipped("panel without its own value")
        raise Rejected("observation.no_value", "Observation has no value and no dataAbsentReason")
    return site
