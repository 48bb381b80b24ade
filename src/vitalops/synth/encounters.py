"""Inpatient stays, ICU transfers, emergency and ambulatory visits, and their Encounter resources.

Bitemporality on purpose: every inpatient encounter (the stay and any ICU transfer, both class
IMP) is written as TWO versions in ``Encounter.ndjson``: versionId "1", status ``in-progress``,
no ``period.end`` and no discharge disposition, ``meta.lastUpdated`` at admission; and versionId
"2", status ``finished``, with the end and the disposition, ``meta.lastUpdated`` at discharge.
A real Bulk Data export carries only the current version; both are written so that the
platform's version handling (a newer version supersedes, history stays queryable, nothing about
the discharge is known before it happened) is exercised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timezone

import numpy as np

from vitalops.synth import codes
from vitalops.synth.fhir_json import DAY, HOUR, JSON, IdMint, concept, fhir_instant, meta, reference
from vitalops.synth.population import PatientRecord, deterioration_logit, logistic
from vitalops.synth.scenarios import POPULATION_SHIFT_SEVERITY, Scenario

#: Median planned length of stay and its log-normal spread.
MEDIAN_STAY_DAYS = 3.5
STAY_SPREAD = 0.55
#: Of deterioration events, the share that is death on the ward rather than ICU transfer.
WARD_DEATH_SHARE = 0.2
ICU_DEATH_SHARE = 0.2
VENTILATION_SHARE = 0.4
ADMITTED_VIA_ED_SHARE = 0.55


@dataclass(slots=True)
class Stay:
    """The clinical course of one inpatient stay, decided before any resource is written."""

    id: str
    admitted_at: int
    discharged_at: int
    severity: float
    sepsis: bool
    deterioration_risk: float
    deteriorated: bool
    shifted_population: bool
    lactate_signal: float
    warning_signs: float
    event_type: str | None = None  # "icu" or "death"
    event_at: int | None = None
    ramp_seconds: int = 0
    icu_id: str | None = None
    icu_end: int | None = None
    ventilated: bool = False
    died_at: int | None = None
    disposition: tuple[str, str] = codes.EXPIRED
    ed_id: str | None = None
    ed_start: int | None = None
    readmission: dict[str, object] = field(default_factory=dict)

    @property
    def los_days(self) -> float:
        return (self.discharged_at - self.admitted_at) / DAY


def plan_stay(
    rng: np.random.Generator, ids: IdMint, patient: PatientRecord, admitted_at: int, scenario: Scenario
) -> Stay:
    """Decide a stay's course: severity, sepsis, true risk, and whether and when it deteriorates."""
    shifted = scenario.population_shifted(patient.site.index, admitted_at)
    severity = float(rng.normal()) + (POPULATION_SHIFT_SEVERITY if shifted else 0.0)
    sepsis = bool(rng.random() < 0.06 + 0.03 * patient.comorbidity_count)
    risk = logistic(deterioration_logit(patient, admitted_at, severity, sepsis))
    deteriorated = bool(rng.random() < risk)
    planned = int(math.exp(rng.normal(math.log(MEDIAN_STAY_DAYS * DAY), STAY_SPREAD)) + 0.25 * DAY * max(severity, 0))
    planned = int(min(max(planned, 20 * HOUR), 21 * DAY))
    stay = Stay(
        id=ids.new(),
        admitted_at=admitted_at,
        discharged_at=admitted_at + planned,
        severity=severity,
        sepsis=sepsis,
        deterioration_risk=risk,
        deteriorated=deteriorated,
        shifted_population=shifted,
        lactate_signal=scenario.lactate_signal(patient.site.index, admitted_at),
        warning_signs=scenario.warning_signs(patient.site.index, admitted_at),
    )
    if rng.random() < ADMITTED_VIA_ED_SHARE:
        stay.ed_id = ids.new()
        stay.ed_start = admitted_at - int(rng.uniform(2, 7) * HOUR)
    if deteriorated:
        event_at = admitted_at + int(rng.uniform(6 * HOUR, max(8 * HOUR, min(planned, 5 * DAY))))
        stay.event_at = event_at
        stay.ramp_seconds = int(rng.uniform(12, 36) * HOUR)
        if rng.random() < WARD_DEATH_SHARE:
            stay.event_type = "death"
            stay.died_at = stay.discharged_at = event_at
        else:
            stay.event_type = "icu"
            stay.icu_id = ids.new()
            stay.icu_end = event_at + int(rng.uniform(1, 4) * DAY)
            stay.ventilated = bool(rng.random() < VENTILATION_SHARE)
            if rng.random() < ICU_DEATH_SHARE:
                stay.died_at = stay.discharged_at = stay.icu_end
            else:
                stay.discharged_at = stay.icu_end + int(rng.uniform(1, 4) * DAY)
    if stay.died_at is None:
        pick = int(rng.choice(len(codes.DISPOSITIONS), p=codes.DISPOSITION_WEIGHTS))
        stay.disposition = codes.DISPOSITIONS[pick]
    return stay


def _encounter(
    patient: PatientRecord,
    encounter_id: str,
    *,
    version: str,
    last_updated: int,
    status: str,
    encounter_class: str,
    start: int,
    end: int | None,
) -> JSON:
    site, tz = patient.site, patient.site.tz
    period = {"start": fhir_instant(start, tz)}
    if end is not None:
        period["end"] = fhir_instant(end, tz)
    return {
        "resourceType": "Encounter",
        "id": encounter_id,
        "meta": meta(version, last_updated, tz, site.name),
        "status": status,
        "class": {
            "system": codes.ACT_CODE,
            "code": encounter_class,
            "display": codes.ENCOUNTER_CLASS[encounter_class],
        },
        "subject": reference("Patient", patient.id),
        "period": period,
    }


def _location(site: str, kind: str, display: str, status: str, start: int, end: int | None, tz: timezone) -> JSON:
    period = {"start": fhir_instant(start, tz)}
    if end is not None:
        period["end"] = fhir_instant(end, tz)
    return {
        "location": {"reference": f"Location/{site}-{kind}", "display": display},
        "status": status,
        "period": period,
    }


def stay_encounters(patient: PatientRecord, stay: Stay) -> list[JSON]:
    """The ED visit that led to the stay (if any), the stay and the ICU transfer (two versions each)."""
    site, tz = patient.site.name, patient.site.tz
    out: list[JSON] = []
    if stay.ed_id is not None and stay.ed_start is not None:
        out.append(
            _encounter(
                patient,
                stay.ed_id,
                version="1",
                last_updated=stay.admitted_at,
                status="finished",
                encounter_class="EMER",
                start=stay.ed_start,
                end=stay.admitted_at,
            )
        )
    ward = "Medical ward"
    first = _encounter(
        patient,
        stay.id,
        version="1",
        last_updated=stay.admitted_at,
        status="in-progress",
        encounter_class="IMP",
        start=stay.admitted_at,
        end=None,
    )
    first["serviceType"] = {"coding": [dict(codes.MEDICAL_SERVICE)], "text": "Medical Service"}
    first["location"] = [_location(site, "ward", ward, "active", stay.admitted_at, None, tz)]
    out.append(first)
    final = _encounter(
        patient,
        stay.id,
        version="2",
        last_updated=stay.discharged_at,
        status="finished",
        encounter_class="IMP",
        start=stay.admitted_at,
        end=stay.discharged_at,
    )
    final["serviceType"] = first["serviceType"]
    final["hospitalization"] = {"dischargeDisposition": concept(codes.DISCHARGE_DISPOSITION, *stay.disposition)}
    if stay.icu_id is not None and stay.event_at is not None and stay.icu_end is not None:
        locations = [
            _location(site, "ward", ward, "completed", stay.admitted_at, stay.event_at, tz),
            _location(site, "icu", "Intensive care unit", "completed", stay.event_at, stay.icu_end, tz),
        ]
        if stay.discharged_at > stay.icu_end:
            locations.append(_location(site, "ward", ward, "completed", stay.icu_end, stay.discharged_at, tz))
        final["location"] = locations
    else:
        final["location"] = [_location(site, "ward", ward, "completed", stay.admitted_at, stay.discharged_at, tz)]
    out.append(final)
    if stay.icu_id is not None and stay.event_at is not None and stay.icu_end is not None:
        icu_service = {"coding": [dict(codes.ICU_SERVICE)], "text": "Intensive care unit"}
        icu_first = _encounter(
            patient,
            stay.icu_id,
            version="1",
            last_updated=stay.event_at,
            status="in-progress",
            encounter_class="IMP",
            start=stay.event_at,
            end=None,
        )
        icu_first["serviceType"] = icu_service
        icu_first["location"] = [_location(site, "icu", "Intensive care unit", "active", stay.event_at, None, tz)]
        icu_first["partOf"] = reference("Encounter", stay.id)
        out.append(icu_first)
        icu_final = _encounter(
            patient,
            stay.icu_id,
            version="2",
            last_updated=stay.icu_end,
            status="finished",
            encounter_class="IMP",
            start=stay.event_at,
            end=stay.icu_end,
        )
        icu_final["serviceType"] = icu_service
        if stay.died_at == stay.icu_end:  # a return to the ward is a transfer, not a discharge
            icu_final["hospitalization"] = {
                "dischargeDisposition": concept(codes.DISCHARGE_DISPOSITION, *codes.EXPIRED)
            }
        icu_final["location"] = [
            _location(site, "icu", "Intensive care unit", "completed", stay.event_at, stay.icu_end, tz)
        ]
        icu_final["partOf"] = reference("Encounter", stay.id)
        out.append(icu_final)
    return out


def visit_encounter(patient: PatientRecord, encounter_id: str, encounter_class: str, start: int, end: int) -> JSON:
    """A finished emergency (EMER, sent home) or ambulatory (AMB) visit, written once, at its end."""
    resource = _encounter(
        patient,
        encounter_id,
        version="1",
        last_updated=end,
        status="finished",
        encounter_class=encounter_class,
        start=start,
        end=end,
    )
    if encounter_class == "EMER":
        resource["hospitalization"] = {"dischargeDisposition": concept(codes.DISCHARGE_DISPOSITION, "home", "Home")}
    return resource
