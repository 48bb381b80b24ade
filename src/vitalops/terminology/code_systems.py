"""What a code may look like before it is stored: the syntax of each code system the platform
knows, and the FHIR R4 code lists of the bound elements it stores.

A feed puts anything in a ``Coding.code`` or a ``status``: a local abbreviation, a name, a note.
Only a code that is what it claims to be enters the facts: one whose system is known here and
whose text matches that system's syntax (or that a hospital's local-codes file maps), and a
status from its element's required value set. Everything else is dropped or quarantined by the
caller, never stored as text.

Sources: LOINC Users' Guide section 12.3 (code = up to 7 digits, a hyphen, a mod-10 check digit;
answer codes ``LA``, parts ``LP``); SNOMED CT Technical Implementation Guide, SCTID (6 to 18
digits); RxNorm Technical Documentation (RXCUI, digits); ICD-10-CM Official Guidelines (a letter,
two characters, optionally a dot and up to four more); CDC Race and Ethnicity Code Set 1.0
(``NNNN-N``); NHSN HSLOC (``NNNN-N``); the FHIR R4 value sets named below (hl7.org/fhir/R4).
"""

from __future__ import annotations

import re

from vitalops.terminology.concepts import ICD10CM, LOINC, RXNORM, SNOMED, SYSTEM_ALIASES

CDC_RACE_ETHNICITY = "urn:oid:2.16.840.1.113883.6.238"
NHSN_HSLOC = "https://www.cdc.gov/nhsn/cdaportal/terminology/codesystem/hsloc.html"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DISCHARGE_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
ADMINISTRATIVE_GENDER_SYSTEM = "http://hl7.org/fhir/administrative-gender"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

#: Code syntax per code system (the whole code must match).
CODE_SYNTAX: dict[str, re.Pattern[str]] = {
    LOINC: re.compile(r"(?:\d{1,7}|L[AP]\d{1,8})-\d"),
    SNOMED: re.compile(r"[1-9]\d{5,17}"),
    RXNORM: re.compile(r"[1-9]\d{0,9}"),
    ICD10CM: re.compile(r"[A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?"),
    CDC_RACE_ETHNICITY: re.compile(r"\d{4}-\d"),
    NHSN_HSLOC: re.compile(r"\d{4}-\d"),
}

#: Required FHIR R4 value sets of the elements ingest stores or acts on: name -> codes.
ADMINISTRATIVE_GENDER = frozenset({"male", "female", "other", "unknown"})
OBSERVATION_STATUS = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
)
ENCOUNTER_STATUS = frozenset(
    {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error",
     "unknown"}
)
CONDITION_CLINICAL_STATUS = frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"})
CONDITION_VERIFICATION_STATUS = frozenset(
    {"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}
)
MEDICATION_REQUEST_STATUS = frozenset(
    {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}
)
MEDICATION_REQUEST_INTENT = frozenset(
    {"proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"}
)
MEDICATION_ADMINISTRATION_STATUS = frozenset(
    {"in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown"}
)
PROCEDURE_STATUS = frozenset(
    {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"}
)
#: v3 ActEncounterCode (the extensible binding of Encounter.class); other classes are not stored.
ENCOUNTER_CLASS = frozenset({"AMB", "EMER", "FLD", "HH", "IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS", "VR"})
#: The discharge-disposition code system (example binding of hospitalization.dischargeDisposition).
DISCHARGE_DISPOSITIONS = frozenset(
    {"home", "alt-home", "other-hcf", "hosp", "long", "aadvice", "exp", "psy", "rehab", "snf", "oth"}
)

_HL7 = "http://terminology.hl7.org/CodeSystem/"
#: Code systems whose codes are a closed list rather than a syntax (HL7 terminology, THO 2.x).
CODE_LISTS: dict[str, frozenset[str]] = {
    ACT_CODE: ENCOUNTER_CLASS,
    DISCHARGE_DISPOSITION: DISCHARGE_DISPOSITIONS,
    ADMINISTRATIVE_GENDER_SYSTEM: ADMINISTRATIVE_GENDER,
    CONDITION_CLINICAL: CONDITION_CLINICAL_STATUS,
    CONDITION_VERIFICATION: CONDITION_VERIFICATION_STATUS,
    _HL7 + "observation-category": frozenset(
        {"social-history", "vital-signs", "imaging", "laboratory", "procedure", "survey", "exam", "therapy",
         "activity"}
    ),
    _HL7 + "condition-category": frozenset({"problem-list-item", "encounter-diagnosis"}),
    _HL7 + "data-absent-reason": frozenset(
        {"unknown", "asked-unknown", "temp-unknown", "not-asked", "asked-declined", "masked", "not-applicable",
         "unsupported", "as-text", "error", "not-a-number", "negative-infinity", "positive-infinity",
         "not-performed", "not-permitted"}
    ),
    _HL7 + "v3-ObservationInterpretation": frozenset(
        {"N", "A", "AA", "H", "HH", "HU", "L", "LL", "LU", "<", ">", "POS", "NEG", "IND", "DET", "ND", "R", "S",
         "I", "NS", "E"}
    ),
    _HL7 + "v3-MaritalStatus": frozenset({"A", "D", "I", "L", "M", "C", "P", "T", "U", "S", "W"}),
    _HL7 + "medicationrequest-category": frozenset({"inpatient", "outpatient", "community", "discharge"}),
}


def well_formed(system: object, code: object) -> bool:
    """True when ``code`` is a code of a known ``system`` in that system's syntax (or on its list).

    A system is known by its URI or an HL7 OID alias; a code under any other system is not
    well formed here (a hospital's local codes are accepted only where its local-codes file maps
    them: ``Terminology.is_storable``)."""
    if type(system) is not str or type(code) is not str:
        return False
    system = SYSTEM_ALIASES.get(system, system)
    pattern = CODE_SYNTAX.get(system)
    if pattern is not None:
        return pattern.fullmatch(code) is not None
    codes = CODE_LISTS.get(system)
    return codes is not None and code in codes
