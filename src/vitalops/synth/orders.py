"""Conditions, medication orders and administrations, and procedures.

Chronic conditions sit on the problem list from registration (SNOMED CT, or ICD-10-CM at the
share of each site that codes that way); sepsis is an encounter diagnosis of the stay. Inpatients
get insulin glargine (diabetes), furosemide (heart failure), vancomycin (sepsis) and, at ICU
transfer, norepinephrine as a vasopressor; some ICU patients are mechanically ventilated.
"""

from __future__ import annotations

import numpy as np

from vitalops.synth import codes
from vitalops.synth.codes import Diagnosis, Drug
from vitalops.synth.encounters import Stay
from vitalops.synth.fhir_json import DAY, HOUR, JSON, IdMint, concept, fhir_instant, meta, quantity, reference
from vitalops.synth.population import PatientRecord

ORAL = ("26643006", "Oral route")
INTRAVENOUS = ("47625008", "Intravenous route")
SUBCUTANEOUS = ("34206005", "Subcutaneous route")


class OrderWriter:
    """Builds one patient's Condition, MedicationRequest, MedicationAdministration and Procedure resources."""

    def __init__(self, patient: PatientRecord, ids: IdMint, rng: np.random.Generator) -> None:
        self.patient = patient
        self.ids = ids
        self.rng = rng
        self.tz = patient.site.tz
        self.site = patient.site.name
        self.subject = reference("Patient", patient.id)
        self.conditions: list[JSON] = []
        self.requests: list[JSON] = []
        self.administrations: list[JSON] = []
        self.procedures: list[JSON] = []

    def _code(self, diagnosis: Diagnosis) -> JSON:
        if self.rng.random() < self.patient.site.icd10_share:
            return concept(codes.ICD10CM, diagnosis.icd10, diagnosis.icd10_display)
        return concept(codes.SNOMED, diagnosis.snomed, diagnosis.snomed_display)

    def condition(self, diagnosis: Diagnosis, *, onset: int, recorded: int, encounter_id: str | None) -> None:
        category = "encounter-diagnosis" if encounter_id else "problem-list-item"
        display = "Encounter Diagnosis" if encounter_id else "Problem List Item"
        resource: JSON = {
            "resourceType": "Condition",
            "id": self.ids.new(),
            "meta": meta("1", recorded, self.tz, self.site),
            "clinicalStatus": concept(codes.CONDITION_CLINICAL, "active", "Active"),
            "verificationStatus": concept(codes.CONDITION_VERIFICATION, "confirmed", "Confirmed"),
            "category": [concept(codes.CONDITION_CATEGORY, category, display)],
            "code": self._code(diagnosis),
            "subject": self.subject,
        }
        if encounter_id:
            resource["encounter"] = reference("Encounter", encounter_id)
        resource["onsetDateTime"] = fhir_instant(onset, self.tz)
        resource["recordedDate"] = fhir_instant(recorded, self.tz)
        self.conditions.append(resource)

    def chronic_conditions(self) -> None:
        for diagnosis, present, onset in zip(
            codes.CHRONIC_CONDITIONS, self.patient.chronic, self.patient.onset_at, strict=True
        ):
            if present:
                self.condition(diagnosis, onset=onset, recorded=self.patient.registered_at, encounter_id=None)

    def request(
        self,
        drug: Drug,
        route: tuple[str, str],
        dose: JSON,
        every_hours: int,
        authored: int,
        encounter_id: str | None,
        *,
        continuous: bool = False,
    ) -> str:
        """Order ``drug``; ``continuous`` infusions carry ``dose`` as a rate (e.g. ug/kg/min)."""
        request_id = self.ids.new()
        resource: JSON = {
            "resourceType": "MedicationRequest",
            "id": request_id,
            "meta": meta("1", authored, self.tz, self.site),
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": concept(codes.RXNORM, drug.rxcui, drug.display),
            "subject": self.subject,
        }
        if encounter_id:
            resource["encounter"] = reference("Encounter", encounter_id)
        resource["authoredOn"] = fhir_instant(authored, self.tz)
        resource["dosageInstruction"] = [
            {
                "timing": {"repeat": {"frequency": 1, "period": every_hours, "periodUnit": "h"}},
                "route": concept(codes.SNOMED, *route),
                "doseAndRate": [{"rateQuantity": dose} if continuous else {"doseQuantity": dose}],
            }
        ]
        self.requests.append(resource)
        return request_id

    def administer(
        self,
        drug: Drug,
        request_id: str,
        encounter_id: str,
        given: int,
        route: tuple[str, str],
        dose: JSON | None = None,
        rate: JSON | None = None,
    ) -> None:
        dosage: JSON = {"route": concept(codes.SNOMED, *route)}
        if dose is not None:
            dosage["dose"] = dose
        if rate is not None:
            dosage["rateQuantity"] = rate
        self.administrations.append(
            {
                "resourceType": "MedicationAdministration",
                "id": self.ids.new(),
                "meta": meta("1", given + 300, self.tz, self.site),
                "status": "completed",
                "medicationCodeableConcept": concept(codes.RXNORM, drug.rxcui, drug.display),
                "subject": self.subject,
                "context": reference("Encounter", encounter_id),
                "effectiveDateTime": fhir_instant(given, self.tz),
                "request": reference("MedicationRequest", request_id),
                "dosage": dosage,
            }
        )

    def home_medications(self) -> None:
        """Outpatient prescriptions on the problem list's date: metformin, oral furosemide."""
        registered = self.patient.registered_at
        if self.patient.has(codes.DIABETES):
            self.request(codes.METFORMIN, ORAL, quantity(500.0, "mg", "mg"), 12, registered, None)
        if self.patient.has(codes.HEART_FAILURE):
            self.request(codes.FUROSEMIDE, ORAL, quantity(40.0, "mg", "mg"), 24, registered, None)

    def _course(
        self,
        drug: Drug,
        route: tuple[str, str],
        dose: JSON,
        every_hours: int,
        start: int,
        end: int,
        stay: Stay,
    ) -> None:
        request_id = self.request(drug, route, dose, every_hours, start, stay.id)
        given = start + int(self.rng.integers(1800, 3 * 3600))
        while given < end:
            encounter_id = stay.id
            if stay.icu_id and stay.event_at and stay.icu_end and stay.event_at <= given < stay.icu_end:
                encounter_id = stay.icu_id
            self.administer(drug, request_id, encounter_id, given, route, dose=dose)
            given += every_hours * HOUR + int(self.rng.integers(-1800, 1801))

    def stay_orders(self, stay: Stay) -> None:
        """Sepsis diagnosis, inpatient medications, vasopressor and ventilation at ICU transfer."""
        start, end = stay.admitted_at + HOUR, stay.discharged_at
        if stay.sepsis:
            self.condition(
                codes.SEPSIS,
                onset=stay.admitted_at,
                recorded=stay.admitted_at + int(self.rng.integers(1, 7)) * HOUR,
                encounter_id=stay.id,
            )
            self._course(
                codes.VANCOMYCIN,
                INTRAVENOUS,
                quantity(1000.0, "mg", "mg"),
                12,
                start,
                min(end, start + 5 * DAY),
                stay,
            )
        if self.patient.has(codes.DIABETES):
            units = float(self.rng.integers(10, 31))
            self._course(codes.INSULIN_GLARGINE, SUBCUTANEOUS, quantity(units, "IU", "[iU]"), 24, start, end, stay)
        if self.patient.has(codes.HEART_FAILURE):
            self._course(codes.FUROSEMIDE, INTRAVENOUS, quantity(40.0, "mg", "mg"), 12, start, end, stay)
        if stay.icu_id and stay.event_at and stay.icu_end:
            rate = quantity(round(float(self.rng.uniform(0.05, 0.3)), 2), "ug/kg/min", "ug/kg/min")
            ordered = stay.event_at + 900
            request_id = self.request(codes.NOREPINEPHRINE, INTRAVENOUS, rate, 6, ordered, stay.icu_id, continuous=True)
            for k in range(min(4, max(1, (stay.icu_end - ordered) // (6 * HOUR)))):
                self.administer(
                    codes.NOREPINEPHRINE,
                    request_id,
                    stay.icu_id,
                    ordered + 900 + k * 6 * HOUR,
                    INTRAVENOUS,
                    rate=rate,
                )
            if stay.ventilated:
                self.ventilation(
                    stay.icu_id, stay.event_at + HOUR, max(stay.event_at + 2 * HOUR, stay.icu_end - 6 * HOUR)
                )

    def ventilation(self, encounter_id: str, start: int, end: int) -> None:
        code, display = codes.MECHANICAL_VENTILATION
        self.procedures.append(
            {
                "resourceType": "Procedure",
                "id": self.ids.new(),
                "meta": meta("1", end, self.tz, self.site),
                "status": "completed",
                "code": concept(codes.SNOMED, code, display),
                "subject": self.subject,
                "encounter": reference("Encounter", encounter_id),
                "performedPeriod": {"start": fhir_instant(start, self.tz), "end": fhir_instant(end, self.tz)},
            }
        )
