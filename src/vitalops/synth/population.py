"""Sites, patients, and the ground-truth risk model that drives every outcome.

The risks are logistic functions with named coefficients, so tests and documentation can say
exactly what signal a model should find:

* deterioration during an inpatient stay (ICU transfer or death): age, comorbidity count,
  frailty, sepsis and the stay's acute severity; the severity also drives the vitals and labs,
  which worsen further over the hours before the event (see ``vitalops.synth.observations``);
* 30-day readmission after a live discharge: age, comorbidity count, admissions in the prior
  year, length of stay and abnormal labs at discharge, plus frailty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timezone

import numpy as np

from vitalops.synth import codes
from vitalops.synth.fhir_json import DAY, JSON, YEAR, IdMint, concept, fhir_instant, meta, site_timezone
from vitalops.synth.people import LOCALES, Identity, Locale, draw_identity

#: Share of patients aged 90 or more at the start of the period (exercises Safe Harbor age grouping).
NINETY_PLUS_SHARE = 0.06

# Deterioration (per stay): logit = DET_INTERCEPT + coefficients x predictors.
DET_INTERCEPT = -4.6
DET_AGE_PER_DECADE = 0.30
DET_PER_COMORBIDITY = 0.25
DET_SEVERITY = 1.25
DET_SEPSIS = 1.0
DET_FRAILTY = 0.35

# 30-day readmission (per live discharge).
READMIT_INTERCEPT = -3.55
READMIT_AGE_PER_DECADE = 0.15
READMIT_PER_COMORBIDITY = 0.30
READMIT_PER_PRIOR_ADMISSION = 0.25
#: Prior admissions beyond this count add no more risk (keeps readmission chains from spiralling).
READMIT_PRIOR_CAP = 4
READMIT_PER_LOS_DAY = 0.08
READMIT_PER_ABNORMAL_LAB = 0.45
READMIT_FRAILTY = 0.35

#: Chronic condition prevalence at age 60, as logits, in the order of ``codes.CHRONIC_CONDITIONS``.
CHRONIC_LOGITS = (-1.2, -2.4, -2.3, -2.1, -0.4)
CHRONIC_PER_YEAR_OF_AGE = 0.045


def logistic(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-logit))


@dataclass(frozen=True, slots=True)
class SiteProfile:
    """One hospital: its case mix, local conventions and time zone."""

    name: str
    index: int
    mrn_prefix: str
    utc_offset_minutes: int
    age_mean: float
    comorbidity_factor: float
    icd10_share: float
    us_customary_units: bool
    locale: Locale

    @property
    def tz(self) -> timezone:
        return site_timezone(self.utc_offset_minutes)


_CASE_MIX = ((60.0, 1.0, 0.15), (67.0, 1.35, 0.2), (55.0, 0.8, 0.8))
_OFFSETS = (-300, -360, -420, -480)


def build_sites(names: list[str]) -> list[SiteProfile]:
    """Profiles for ``names`` in order; the second site reports temperature in [degF], weight in [lb_av]."""
    sites = []
    for index, name in enumerate(names):
        age_mean, factor, icd10_share = _CASE_MIX[index % len(_CASE_MIX)]
        sites.append(
            SiteProfile(
                name=name,
                index=index,
                mrn_prefix=f"{name[:2].upper()}{index}",
                utc_offset_minutes=_OFFSETS[index % len(_OFFSETS)],
                age_mean=age_mean,
                comorbidity_factor=factor,
                icd10_share=icd10_share,
                us_customary_units=index == 1,
                locale=LOCALES[index % len(LOCALES)],
            )
        )
    return sites


@dataclass(slots=True)
class PatientRecord:
    """A simulated patient: demographics, chronic conditions, latent frailty and identifiers."""

    id: str
    index: int
    site: SiteProfile
    female: bool
    birth_date: date
    birth_at: int
    race: int
    hispanic: bool
    chronic: tuple[bool, ...]
    onset_at: tuple[int, ...]
    frailty: float
    registered_at: int
    identity: Identity
    deceased_at: int | None = None

    @property
    def comorbidity_count(self) -> int:
        return sum(self.chronic)

    def has(self, diagnosis: codes.Diagnosis) -> bool:
        return self.chronic[codes.CHRONIC_CONDITIONS.index(diagnosis)]

    def age_at(self, moment: int) -> float:
        return (moment - self.birth_at) / YEAR


def draw_patient(rng: np.random.Generator, ids: IdMint, site: SiteProfile, index: int, start_at: int) -> PatientRecord:
    """One patient of ``site``, registered before ``start_at``, with the site's case mix."""
    female = bool(rng.random() < 0.52)
    if rng.random() < NINETY_PLUS_SHARE:
        age = float(rng.uniform(90.0, 101.0))
    else:
        age = float(np.clip(rng.normal(site.age_mean, 17.0), 18.0, 89.5))
    birth_at = int(start_at - age * YEAR)
    birth = datetime.fromtimestamp(birth_at, UTC).date()
    birth_at = int(datetime(birth.year, birth.month, birth.day, tzinfo=UTC).timestamp())
    race = int(rng.choice(len(codes.RACES), p=codes.RACE_WEIGHTS))
    hispanic = bool(rng.random() < 0.17)
    frailty = float(rng.normal())
    shift = math.log(site.comorbidity_factor) + 0.3 * frailty + CHRONIC_PER_YEAR_OF_AGE * (min(age, 90) - 60)
    chronic = tuple(bool(rng.random() < logistic(base + shift)) for base in CHRONIC_LOGITS)
    registered_at = int(start_at - rng.uniform(30, 3 * 365) * DAY)
    onset_at = tuple(int(registered_at - rng.uniform(0.5, 15) * YEAR) for _ in chronic)
    identity = draw_identity(rng, female=female, index=index, site_code=site.mrn_prefix, locale=site.locale)
    return PatientRecord(
        id=ids.new(),
        index=index,
        site=site,
        female=female,
        birth_date=birth,
        birth_at=birth_at,
        race=race,
        hispanic=hispanic,
        chronic=chronic,
        onset_at=onset_at,
        frailty=frailty,
        registered_at=max(registered_at, birth_at + DAY),
        identity=identity,
    )


def deterioration_logit(patient: PatientRecord, admitted_at: int, severity: float, sepsis: bool) -> float:
    """The true log-odds that a stay ends in ICU transfer or death."""
    return (
        DET_INTERCEPT
        + DET_AGE_PER_DECADE * (patient.age_at(admitted_at) - 65.0) / 10.0
        + DET_PER_COMORBIDITY * patient.comorbidity_count
        + DET_SEVERITY * severity
        + DET_SEPSIS * sepsis
        + DET_FRAILTY * patient.frailty
    )


def readmission_logit(
    patient: PatientRecord, discharged_at: int, *, prior_admissions: int, los_days: float, abnormal_labs: int
) -> float:
    """The true log-odds of an unplanned readmission within 30 days of a live discharge."""
    return (
        READMIT_INTERCEPT
        + READMIT_AGE_PER_DECADE * (patient.age_at(discharged_at) - 65.0) / 10.0
        + READMIT_PER_COMORBIDITY * patient.comorbidity_count
        + READMIT_PER_PRIOR_ADMISSION * min(prior_admissions, READMIT_PRIOR_CAP)
        + READMIT_PER_LOS_DAY * min(los_days, 14.0)
        + READMIT_PER_ABNORMAL_LAB * abnormal_labs
        + READMIT_FRAILTY * patient.frailty
    )


def patient_resource(patient: PatientRecord, *, version: str, last_updated: int, deceased_at: int | None) -> JSON:
    """The Patient resource (US Core race and ethnicity, MRN and SSN, telecom, address)."""
    site, who = patient.site, patient.identity
    race_code, race_display = codes.RACES[patient.race]
    eth_code, eth_display = codes.ETHNICITIES[0 if patient.hispanic else 1]
    resource: JSON = {
        "resourceType": "Patient",
        "id": patient.id,
        "meta": meta(version, last_updated, site.tz, site.name),
        "extension": [
            {
                "url": codes.US_CORE_RACE,
                "extension": [
                    {
                        "url": "ombCategory",
                        "valueCoding": {
                            "system": codes.OMB_RACE_ETHNICITY,
                            "code": race_code,
                            "display": race_display,
                        },
                    },
                    {"url": "text", "valueString": race_display},
                ],
            },
            {
                "url": codes.US_CORE_ETHNICITY,
                "extension": [
                    {
                        "url": "ombCategory",
                        "valueCoding": {
                            "system": codes.OMB_RACE_ETHNICITY,
                            "code": eth_code,
                            "display": eth_display,
                        },
                    },
                    {"url": "text", "valueString": eth_display},
                ],
            },
        ],
        "identifier": [
            {
                "use": "usual",
                "type": concept(codes.IDENTIFIER_TYPE, "MR", "Medical record number"),
                "system": codes.MRN_SYSTEM_PREFIX + site.name,
                "value": who.mrn,
            },
            {
                "type": concept(codes.IDENTIFIER_TYPE, "SS", "Social Security number"),
                "system": codes.US_SSN,
                "value": who.ssn,
            },
        ],
        "active": True,
        "name": [{"use": "official", "family": who.family, "given": [who.given]}],
        "telecom": [
            {"system": "phone", "value": who.phone, "use": "home"},
            {"system": "email", "value": who.email},
        ],
        "gender": "female" if patient.female else "male",
        "birthDate": patient.birth_date.isoformat(),
    }
    if deceased_at is not None:
        resource["deceasedDateTime"] = fhir_instant(deceased_at, site.tz)
    resource["address"] = [
        {
            "use": "home",
            "line": [who.street],
            "city": who.city,
            "state": who.state,
            "postalCode": who.zip_code,
            "country": "US",
        }
    ]
    resource["managingOrganization"] = {"reference": f"Organization/{site.name}", "display": site.name}
    return resource
