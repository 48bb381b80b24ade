"""Code tables of the synthetic hospital: real LOINC, SNOMED CT, ICD-10-CM, RxNorm and HL7 codes.

Every code here is one of the clinical facts listed in the architecture notes or was checked
against the published code system; nothing is made up. Each table is a tuple of plain records so
that the generator can build FHIR JSON without lookups in hot loops.
"""

from __future__ import annotations

from dataclasses import dataclass

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
DISCHARGE_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
HOSPITAL_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0069"
#: NHSN healthcare service location codes (HSLOC), as the HL7 SANER guide names the system.
NHSN_HSLOC = "https://www.cdc.gov/nhsn/cdaportal/terminology/codesystem/hsloc.html"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
OMB_RACE_ETHNICITY = "urn:oid:2.16.840.1.113883.6.238"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
SITE_TAG_SYSTEM = "https://vitalops.dev/fhir/site"
MRN_SYSTEM_PREFIX = "https://vitalops.dev/fhir/sid/mrn/"


@dataclass(frozen=True, slots=True)
class Measure:
    """A LOINC-coded numeric observation with its UCUM unit (``code``) and printable unit."""

    loinc: str
    display: str
    ucum: str
    unit_text: str
    decimals: int


HEART_RATE = Measure("8867-4", "Heart rate", "/min", "beats/minute", 0)
RESPIRATORY_RATE = Measure("9279-1", "Respiratory rate", "/min", "breaths/minute", 0)
TEMPERATURE_C = Measure("8310-5", "Body temperature", "Cel", "Cel", 1)
TEMPERATURE_F = Measure("8310-5", "Body temperature", "[degF]", "degF", 1)
SPO2 = Measure("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", "%", 0)
SPO2_ALSO = ("2708-6", "Oxygen saturation in Arterial blood")
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
SYSTOLIC = Measure("8480-6", "Systolic blood pressure", "mm[Hg]", "mmHg", 0)
DIASTOLIC = Measure("8462-4", "Diastolic blood pressure", "mm[Hg]", "mmHg", 0)
WEIGHT_KG = Measure("29463-7", "Body weight", "kg", "kg", 1)
WEIGHT_LB = Measure("29463-7", "Body weight", "[lb_av]", "lb", 1)

WBC = Measure("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", "10*3/uL", 1)
HEMOGLOBIN = Measure("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", "g/dL", 1)
PLATELETS = Measure("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", "10*3/uL", 0)
CREATININE = Measure("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 2)
CREATININE_UMOL = Measure("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "umol/L", "umol/L", 0)
#: A creatinine result in umol/L (whole numbers, as umol/L are reported) sent under the mg/dL unit: the
#: mislabelled feed of the ``unit-mislabel`` scenario.
CREATININE_UMOL_AS_MG_DL = Measure("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0)
GLUCOSE = Measure("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0)
LACTATE = Measure("2524-7", "Lactate [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 1)
SODIUM = Measure("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 0)
POTASSIUM = Measure("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 1)
BILIRUBIN = Measure("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 1)
BUN = Measure("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0)
HBA1C = Measure("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "%", 1)

#: 1 mg/dL creatinine = 88.42 umol/L (architecture notes, "Clinical facts").
CREATININE_UMOL_PER_MG_DL = 88.42
#: kg -> international avoirdupois pound.
LB_PER_KG = 2.20462


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A condition with its SNOMED CT concept and the ICD-10-CM code some sites send instead."""

    key: str
    snomed: str
    snomed_display: str
    icd10: str
    icd10_display: str


DIABETES = Diagnosis(
    "diabetes",
    "44054006",
    "Diabetes mellitus type 2",
    "E11.9",
    "Type 2 diabetes mellitus without complications",
)
HEART_FAILURE = Diagnosis("heart_failure", "84114007", "Heart failure", "I50.9", "Heart failure, unspecified")
COPD = Diagnosis(
    "copd",
    "13645005",
    "Chronic obstructive lung disease",
    "J44.9",
    "Chronic obstructive pulmonary disease, unspecified",
)
CKD = Diagnosis("ckd", "709044004", "Chronic kidney disease", "N18.3", "Chronic kidney disease, stage 3")
HYPERTENSION = Diagnosis(
    "hypertension",
    "38341003",
    "Hypertensive disorder, systemic arterial",
    "I10",
    "Essential (primary) hypertension",
)
SEPSIS = Diagnosis("sepsis", "91302008", "Sepsis", "A41.9", "Sepsis, unspecified organism")

#: Chronic conditions in the order the population model draws them.
CHRONIC_CONDITIONS = (DIABETES, HEART_FAILURE, COPD, CKD, HYPERTENSION)


@dataclass(frozen=True, slots=True)
class Drug:
    """An RxNorm ingredient (IN) concept."""

    rxcui: str
    display: str


METFORMIN = Drug("6809", "metformin")
INSULIN_GLARGINE = Drug("274783", "insulin glargine")
FUROSEMIDE = Drug("4603", "furosemide")
VANCOMYCIN = Drug("11124", "vancomycin")
NOREPINEPHRINE = Drug("7512", "norepinephrine")

MECHANICAL_VENTILATION = ("40617009", "Artificial respiration")

ENCOUNTER_CLASS = {
    "IMP": "inpatient encounter",
    "EMER": "emergency",
    "AMB": "ambulatory",
}

MEDICAL_SERVICE = {"system": HOSPITAL_SERVICE, "code": "MED", "display": "Medical Service"}
ICU_SERVICE = {"system": NHSN_HSLOC, "code": "1027-2", "display": "Medical Critical Care"}

DISPOSITIONS = (
    ("home", "Home"),
    ("snf", "Skilled nursing facility"),
    ("rehab", "Rehabilitation"),
    ("other-hcf", "Other healthcare facility"),
)
DISPOSITION_WEIGHTS = (0.80, 0.12, 0.05, 0.03)
EXPIRED = ("exp", "Expired")

#: OMB race categories (CDC Race & Ethnicity code system) and the weights the population draws.
RACES = (
    ("2106-3", "White"),
    ("2054-5", "Black or African American"),
    ("2028-9", "Asian"),
    ("1002-5", "American Indian or Alaska Native"),
    ("2076-8", "Native Hawaiian or Other Pacific Islander"),
)
RACE_WEIGHTS = (0.64, 0.18, 0.12, 0.04, 0.02)
ETHNICITIES = (("2135-2", "Hispanic or Latino"), ("2186-5", "Not Hispanic or Latino"))
