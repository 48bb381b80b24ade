"""Patient, Encounter, Condition, MedicationRequest, MedicationAdministration and Procedure -> facts.

``known_at`` of all of these is meta.lastUpdated, else the ingest time (none has ``issued``). Each extractor appends
rows (``fact_rows.ROW_FIELDS`` order) and returns the resource's site, or raises Skipped/Rejected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from vitalops.ingest.extract_common import (
    Context,
    Rejected,
    Retracted,
    Row,
    bound_code,
    event_row,
    first_code,
    instant,
    known_at,
    known_code,
    optional_instant,
    patient_key,
    pick_coding,
    resource_id,
    site_of,
    source_version,
)
from vitalops.ingest.medications import medication_reference
from vitalops.lake.schema import RECORDED
from vitalops.terminology import code_systems as cs

US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
#: NHSN healthcare service location codes of critical care units (CDC NHSN HSLOC code system).
NHSN_CRITICAL_CARE = frozenset({"1027-2", "1028-0", "1029-8", "1025-6", "1026-4", "1030-6", "1031-4"})
#: The quarantine rule of a reference that names nothing the batch holds.
UNRESOLVABLE = "reference.unresolvable"
_ICU_TEXT = re.compile(r"\b(icu|intensive care|critical care)\b", re.IGNORECASE)


def _period(resource: dict[str, Any], name: str) -> tuple[str | None, str | None]:
    period = resource.get(name)
    if not isinstance(period, dict):
        return None, None
    return optional_instant(period.get("start"), f"{name}.start"), optional_instant(period.get("end"), f"{name}.end")


def patient_facts(resource: dict[str, Any], ctx: Context, index: int, rows: list[Row]) -> str:
    """Birth, sex, race and ethnicity (US Core OMB categories) and death as an outcome.

    Demographic facts other than birth take the birth date as ``effective_at`` (they hold from
    birth), or the known time when the birth date is missing.
    """
    key = ctx.pseudonyms.patient_key(resource_id(resource, "Patient"))
    source_id = ctx.pseudonyms.resource_key("Patient", resource["id"])
    site = site_of(resource, ctx)
    known = known_at(resource, ctx)
    version = source_version(resource)
    birth = optional_instant(resource.get("birthDate"), "birthDate")
    since = birth or known
    ordinal = 0

    def add(kind: str, concept: str, system: str | None, code: str | None, at: str) -> None:
        nonlocal ordinal
        rows.append(
            (
                site,
                key,
                kind,
                concept,
                system,
                code,
                None,
                code,
                None,
                None,
                None,
                at,
                None,
                known,
                "Patient",
                source_id,
                version,
                ordinal,
                index,
                None,
                None,
                None,
            )
        )
        ordinal += 1

    if birth is not None:
        add("demographic", "birth", None, None, birth)
    gender = bound_code(resource.get("gender"), cs.ADMINISTRATIVE_GENDER, "Patient.gender",
                        "http://hl7.org/fhir/ValueSet/administrative-gender")
    if gender:
        add("demographic", "sex", cs.ADMINISTRATIVE_GENDER_SYSTEM, gender, since)
    for extension in resource.get("extension") or ():
        url = extension.get("url")
        concept = "race" if url == US_CORE_RACE else "ethnicity" if url == US_CORE_ETHNICITY else None
        if concept is None:
            continue
        for part in extension.get("extension") or ():
            coding = part.get("valueCoding")
            if part.get("url") == "ombCategory" and isinstance(coding, dict):
                system, code = known_code({"coding": [coding]}, ctx)
                if code is not None:  # an OMB category in the CDC code set, never a text
                    add("demographic", concept, system, code, since)
    died = resource.get("deceasedDateTime")
    if died is not None:
        add("outcome", "death", None, None, instant(died, "deceasedDateTime"))
    return site


def _is_icu(concept_field: Any) -> bool:
    if not isinstance(concept_field, dict):
        return False
    for coding in concept_field.get("coding") or ():
        if coding.get("code") in NHSN_CRITICAL_CARE or _ICU_TEXT.search(str(coding.get("display") or "")):
            return True
    return bool(_ICU_TEXT.search(str(concept_field.get("text") or "")))


def encounter_facts(resource: dict[str, Any], ctx: Context, index: int, rows: list[Row]) -> str:
    """The encounter (class, period, status), ICU stays (service type or ICU locations) and the
    discharge disposition (at the end of the period)."""
    status = resource.get("status")
    if status in ("entered-in-error", "cancelled"):
        raise Retracted(f"status {status}")
    bound_code(status, cs.ENCOUNTER_STATUS, "Encounter.status", "http://hl7.org/fhir/ValueSet/encounter-status")
    source_id = ctx.pseudonyms.encounter_key(resource_id(resource, "Encounter"))
    patient = patient_key(resource, ctx)
    site = site_of(resource, ctx)
    start, end = _period(resource, "period")
    if start is None:
        raise Rejected("required.period_start", "Encounter has no period.start")
    known = known_at(resource, ctx)
    version = source_version(resource)
    this_encounter = source_id
    recorded_class = resource.get("class")
    # a class outside v3 ActEncounterCode is not stored (the binding is extensible: not quarantined)
    class_system, class_code = known_code({"coding": [recorded_class]} if isinstance(recorded_class, dict) else None,
                                          ctx)
    ordinal = 0

    def add(concept: str, system: str | None, code: str | None, at: str, until: str | None) -> None:
        nonlocal ordinal
        rows.append(
            (
                site,
                patient,
                "encounter",
                concept,
                system,
                code,
                None,
                code,
                None,
                status,
                this_encounter,
                at,
                until,
                known,
                "Encounter",
                source_id,
                version,
                ordinal,
                index,
                None,
                None,
                None,
            )
        )
        ordinal += 1

    add("encounter", class_system, class_code, start, end)
    service = resource.get("serviceType")
    if _is_icu(service):
        add("icu_stay", *known_code(service, ctx), start, end)
    for place in resource.get("location") or ():
        target = place.get("location") if isinstance(place, dict) else None
        if isinstance(target, dict) and _ICU_TEXT.search(str(target.get("display") or "")):
            place_start, place_end = _period(place, "period")
            add("icu_stay", None, None, place_start or start, place_end if place_start else end)
    hospitalization = resource.get("hospitalization")
    disposition = hospitalization.get("dischargeDisposition") if isinstance(hospitalization, dict) else None
    system, code = known_code(disposition, ctx)
    if code is not None and end is not None:
        add("discharge_disposition", system, code, end, None)
    return site


def condition_facts(resource: dict[str, Any], ctx: Context, index: int, rows: list[Row]) -> str:
    """One condition fact: onset to abatement, with the clinical status; without ``onset[x]``
    its time is the ``recordedDate`` and its ``effective_basis`` says so (``recorded``)."""
    verification = bound_code(first_code(resource.get("verificationStatus")), cs.CONDITION_VERIFICATION_STATUS,
                              "Condition.verificationStatus", "http://hl7.org/fhir/ValueSet/condition-ver-status")
    if verification in ("refuted", "entered-in-error"):
        raise Retracted(f"verification status {verification}")
    source_id = ctx.pseudonyms.resource_key("Condition", resource_id(resource, "Condition"))
    patient = patient_key(resource, ctx)
    site = site_of(resource, ctx)
    onset, _ = _period(resource, "onsetPeriod")
    onset = optional_instant(resource.get("onsetDateTime"), "onsetDateTime") or onset
    basis = None
    if onset is None:
        # Entered at or after its onset: "ever diagnosed" sees it no earlier than the record did.
        onset, basis = optional_instant(resource.get("recordedDate"), "recordedDate"), RECORDED
    if onset is None:
        raise Rejected("required.onset", "Condition has no onset date or recorded date")
    _, abated = _period(resource, "abatementPeriod")
    abated = optional_instant(resource.get("abatementDateTime"), "abatementDateTime") or abated
    clinical = bound_code(first_code(resource.get("clinicalStatus")), cs.CONDITION_CLINICAL_STATUS,
                          "Condition.clinicalStatus", "http://hl7.org/fhir/ValueSet/condition-clinical")
    system, code, concept = pick_coding(resource.get("code"), ctx)
    rows.append(event_row(resource, ctx, index, kind="condition", resource_type="Condition", site=site,
                          patient=patient, source_id=source_id, coding=(system, code, concept), status=clinical,
                          start=onset, end=abated, basis=basis))
    return site


def _medication_coding(
    resource: dict[str, Any], ctx: Context, resource_type: str
) -> tuple[str | None, str | None, Any]:
    """The drug's coding, from ``medicationCodeableConcept`` or else the Medication that
    ``medicationReference`` names (contained, or read in the same batch), picked from its ``code``
    as from a CodeableConcept. Raises Rejected (``reference.unresolvable``) when neither is there."""
    coded = resource.get("medicationCodeableConcept")
    if coded is None:
        if resource.get("medicationReference") is None:
            raise Rejected("required.medication", f"{resource_type} has no medication[x]")
        target = medication_reference(resource)
        if type(target) is str and target.startswith("#"):
            for contained in resource.get("contained") or ():
                if contained.get("resourceType") == "Medication" and contained.get("id") == target[1:]:
                    return pick_coding(contained.get("code"), ctx)
            raise Rejected(UNRESOLVABLE, f"{resource_type}.medicationReference: no contained Medication has its id")
        found, coded = ctx.medications.lookup(target)
        if not found:
            raise Rejected(UNRESOLVABLE, f"{resource_type}.medicationReference: the Medication is neither "
                                         "contained nor in the same export")
    return pick_coding(coded, ctx)


def _medication(
    resource: dict[str, Any],
    ctx: Context,
    index: int,
    rows: list[Row],
    *,
    resource_type: str,
    start: str | None,
    end: str | None,
) -> str:
    source_id = ctx.pseudonyms.resource_key(resource_type, resource_id(resource, resource_type))
    patient = patient_key(resource, ctx)
    site = site_of(resource, ctx)
    if start is None:
        raise Rejected("required.effective", f"{resource_type} has no start time")
    system, code, concept = _medication_coding(resource, ctx, resource_type)
    rows.append(event_row(resource, ctx, index, kind="medication", resource_type=resource_type, site=site,
                          patient=patient, source_id=source_id, coding=(system, code, concept),
                          status=resource.get("status"), start=start, end=end))
    return site


def medication_request_facts(resource: dict[str, Any], ctx: Context, index: int, rows: list[Row]) -> str:
    """An order: authored on (else the first dosage's bounds start) to the bounds or validity end."""
    status = resource.get("status")
    if status in ("entered-in-error", "cancelled"):
        raise Retracted(f"status {status}")
    bound_code(status, cs.MEDICATION_REQUEST_STATUS, "MedicationRequest.status",
               "http://hl7.org/fhir/ValueSet/medicationrequest-status")
    bound_code(resource.get("intent"), cs.MEDICATION_REQUEST_INTENT, "MedicationRequest.intent",
               "http://hl7.org/fhir/ValueSet/medicationrequest-intent")
    start = optional_instant(resource.get("authoredOn"), "authoredOn")
    end = None
    for dosage in resource.get("dosageInstruction") or ():
        repeat = (dosage.get("timing") or {}).get("repeat") or {}
        bounds_start, end = _period(repeat, "boundsPeriod")
        start = start or bounds_start
        break
    if end is None:
        _, end = _period(resource.get("dispenseRequest") or {}, "validityPeriod")
    return _medication(resource, ctx, index, rows, resource_type="MedicationRequest", start=start, end=end)


def medication_administration_facts(resource: dict[str, Any], ctx: Context, index: int, rows: list[Row]) -> str:
    """A dose given: effective time or period."""
    status = resource.get("status")
    if status in ("entered-in-error", "not-done"):
        raise Retracted(f"status {status}")
    bound_code(status, cs.MEDICATION_ADMINISTRATION_STATUS, "MedicationAdministration.status",
               "http://hl7.org/fhir/ValueSet/medication-admin-status")
    start, end = _period(resource, "effectivePeriod")
    start = optional_instant(resource.get("effectiveDateTime"), "effectiveDateTime") or start
    return _medication(resource, ctx, index, rows, resource_type="MedicationAdministration", start=start, end=end)


def procedure_facts(resource: dict[str, Any], ctx: Context, index: int, rows: list[Row]) -> str:
    """A procedure performed: performed time or period."""
    status = resource.get("status")
    if status in ("entered-in-error", "not-done"):
        raise Retracted(f"status {status}")
    bound_code(status, cs.PROCEDURE_STATUS, "Procedure.status", "http://hl7.org/fhir/ValueSet/event-status")
    source_id = ctx.pseudonyms.resource_key("Procedure", resource_id(resource, "Procedure"))
    patient = patient_key(resource, ctx)
    site = site_of(resource, ctx)
    start, end = _period(resource, "performedPeriod")
    start = optional_instant(resource.get("performedDateTime"), "performedDateTime") or start
    if start is None:
        raise Rejected("required.performed", "Procedure has no performed time")
    system, code, concept = pick_coding(resource.get("code"), ctx)
    rows.append(event_row(resource, ctx, index, kind="procedure", resource_type="Procedure", site=site,
                          patient=patient, source_id=source_id, coding=(system, code, concept), status=status,
                          start=start, end=end))
    return site


Extractor = Callable[[dict[str, Any], Context, int, list[Row]], str]
