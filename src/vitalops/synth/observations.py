"""Physiology: vital signs every four hours and labs once or twice a day, driven by the true risk.

Each stay has a latent state in standard-deviation units: the acute severity, fading as the
patient recovers, plus, for a stay that deteriorates, a ramp over the 12-36 hours before the
event (heart and respiratory rate rise, SpO2 and blood pressure fall, lactate, creatinine and
bilirubin rise). Some stays that do not deteriorate get a transient bump (false alarms), and
every patient has personal offsets, so the signal is real but not perfect.

Lab results are issued 30 minutes to a few hours after the draw, and a few much later, so
late-arriving results exist (``issued`` and ``meta.lastUpdated`` after ``effectiveDateTime``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vitalops.synth import codes
from vitalops.synth.codes import Measure
from vitalops.synth.encounters import Stay
from vitalops.synth.fhir_json import DAY, HOUR, JSON, IdMint, fhir_instant, meta, quantity, reference
from vitalops.synth.population import PatientRecord
from vitalops.synth.scenarios import Scenario

VITALS_EVERY = 4 * HOUR
RECOVERY_TIME = 72 * HOUR
#: Share of lab results that arrive 12-72 hours late.
LATE_LAB_SHARE = 0.04

_VITAL_CATEGORY = [
    {"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}
]
_LAB_CATEGORY = [{"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}]


@dataclass(frozen=True, slots=True)
class DischargeLabs:
    """The last lab values of a stay, in canonical units, for the readmission risk."""

    creatinine_mg_dl: float
    hemoglobin_g_dl: float
    sodium_mmol_l: float
    wbc_10e3_ul: float

    def abnormal_count(self) -> int:
        return (
            (self.creatinine_mg_dl > 1.5)
            + (self.hemoglobin_g_dl < 10.0)
            + (self.sodium_mmol_l < 135.0)
            + (self.wbc_10e3_ul > 12.0)
        )


class ObservationMaker:
    """Builds Observation resources for one patient (site, units and encounter references)."""

    def __init__(self, patient: PatientRecord, ids: IdMint, scenario: Scenario) -> None:
        self.patient = patient
        self.ids = ids
        self.scenario = scenario
        self.site = patient.site
        self.tz = patient.site.tz
        self.subject = reference("Patient", patient.id)
        self.out: list[JSON] = []
        self._texts: dict[int, str] = {}
        self._site_tag = meta("1", 0, self.tz, self.site.name)["tag"]

    def _text(self, moment: int) -> str:
        # Five vitals share a time, a lab draw shares it across ten results: format each instant once.
        text = self._texts.get(moment)
        if text is None:
            text = self._texts[moment] = fhir_instant(moment, self.tz)
        return text

    def _base(self, code: JSON, category: list[JSON], encounter_id: str, effective: int, issued: int) -> JSON:
        issued_text = self._text(issued)
        return {
            "resourceType": "Observation",
            "id": self.ids.new(),
            "meta": {"versionId": "1", "lastUpdated": issued_text, "tag": self._site_tag},
            "status": "final",
            "category": category,
            "code": code,
            "subject": self.subject,
            "encounter": reference("Encounter", encounter_id),
            "effectiveDateTime": self._text(effective),
            "issued": issued_text,
        }

    def measure(
        self,
        measure: Measure,
        value: float,
        category: list[JSON],
        encounter_id: str,
        effective: int,
        issued: int,
    ) -> None:
        code = {
            "coding": [{"system": codes.LOINC, "code": measure.loinc, "display": measure.display}],
            "text": measure.display,
        }
        resource = self._base(code, category, encounter_id, effective, issued)
        value = float(value)  # numpy scalars are not JSON
        rounded = round(value, measure.decimals) if measure.decimals else float(round(value))
        resource["valueQuantity"] = quantity(rounded, measure.unit_text, measure.ucum)
        self.out.append(resource)

    def vital_set(self, encounter_id: str, effective: int, issued: int, values: tuple[float, ...]) -> None:
        """Heart rate, respiratory rate, temperature, SpO2 and the blood pressure panel at one time."""
        hr, rr, temp_c, spo2, sbp, dbp = (float(v) for v in values)
        self.measure(codes.HEART_RATE, hr, _VITAL_CATEGORY, encounter_id, effective, issued)
        self.measure(codes.RESPIRATORY_RATE, rr, _VITAL_CATEGORY, encounter_id, effective, issued)
        if self.site.us_customary_units:
            self.measure(
                codes.TEMPERATURE_F,
                temp_c * 9.0 / 5.0 + 32.0,
                _VITAL_CATEGORY,
                encounter_id,
                effective,
                issued,
            )
        else:
            self.measure(codes.TEMPERATURE_C, temp_c, _VITAL_CATEGORY, encounter_id, effective, issued)
        spo2_code = {
            "coding": [
                {"system": codes.LOINC, "code": codes.SPO2.loinc, "display": codes.SPO2.display},
                {"system": codes.LOINC, "code": codes.SPO2_ALSO[0], "display": codes.SPO2_ALSO[1]},
            ],
            "text": "Oxygen saturation",
        }
        resource = self._base(spo2_code, _VITAL_CATEGORY, encounter_id, effective, issued)
        resource["valueQuantity"] = quantity(float(round(spo2)), "%", "%")
        self.out.append(resource)
        panel = self._base(
            {
                "coding": [{"system": codes.LOINC, "code": codes.BP_PANEL[0], "display": codes.BP_PANEL[1]}],
                "text": "Blood pressure",
            },
            _VITAL_CATEGORY,
            encounter_id,
            effective,
            issued,
        )
        panel["component"] = [
            {
                "code": {
                    "coding": [{"system": codes.LOINC, "code": m.loinc, "display": m.display}],
                    "text": m.display,
                },
                "valueQuantity": quantity(float(round(v)), m.unit_text, m.ucum),
            }
            for m, v in ((codes.SYSTOLIC, sbp), (codes.DIASTOLIC, dbp))
        ]
        self.out.append(panel)

    def weight(self, encounter_id: str, effective: int, weight_kg: float) -> None:
        issued = effective + 5 * 60
        if self.site.us_customary_units:
            self.measure(codes.WEIGHT_LB, weight_kg * codes.LB_PER_KG, _VITAL_CATEGORY, encounter_id, effective, issued)
        else:
            self.measure(codes.WEIGHT_KG, weight_kg, _VITAL_CATEGORY, encounter_id, effective, issued)

    def lab(self, measure: Measure, value: float, encounter_id: str, effective: int, issued: int) -> None:
        if measure is codes.CREATININE and self.scenario.creatinine_in_umol(self.site.index, effective):
            measure, value = codes.CREATININE_UMOL, value * codes.CREATININE_UMOL_PER_MG_DL
        elif measure is codes.CREATININE and self.scenario.creatinine_mislabelled(self.site.index, effective):
            measure, value = codes.CREATININE_UMOL_AS_MG_DL, value * codes.CREATININE_UMOL_PER_MG_DL
        self.measure(measure, value, _LAB_CATEGORY, encounter_id, effective, issued)


@dataclass(frozen=True, slots=True)
class Baseline:
    """A patient's personal offsets, constant across stays."""

    heart_rate: float
    systolic: float
    weight_kg: float
    creatinine_mg_dl: float

    @classmethod
    def draw(cls, rng: np.random.Generator, patient: PatientRecord) -> Baseline:
        creatinine = (1.9 if patient.has(codes.CKD) else 0.75 if patient.female else 0.9) * math.exp(
            rng.normal(0, 0.12)
        )
        return cls(
            float(rng.normal(0, 6)),
            float(rng.normal(0, 8)),
            float(np.clip(rng.normal(70 if patient.female else 84, 14), 40, 180)),
            creatinine,
        )


def _latent(stay: Stay, times: np.ndarray, bump_at: float, bump_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Severity (fading with recovery) and the pre-event ramp at ``times`` (scaled by the stay's
    ``warning_signs``: what an early-treatment protocol leaves of it)."""
    elapsed = (times - stay.admitted_at).astype(float)
    severity = 0.8 * stay.severity * (0.35 + 0.65 * np.exp(-elapsed / RECOVERY_TIME))
    ramp = np.zeros(len(times))
    if stay.event_at is not None:
        before = times < stay.event_at
        to_event = (stay.event_at - times[before]).astype(float)
        ramp[before] = np.clip(1.0 - to_event / stay.ramp_seconds, 0.0, 1.0) ** 1.5
        ramp[~before] = np.exp(-(times[~before] - stay.event_at) / (36.0 * HOUR))
        ramp *= stay.warning_signs
    if bump_size:
        ramp += bump_size * np.exp(-(((times - bump_at) / (8.0 * HOUR)) ** 2))
    return severity, ramp


def _schedule(rng: np.random.Generator, start: int, end: int, every: int, jitter: int) -> np.ndarray:
    count = max(1, (end - start - 1800) // every + 1)
    times = start + 1800 + np.arange(count) * every + rng.integers(-jitter, jitter + 1, count)
    clipped: np.ndarray = np.clip(times, start + 300, end - 300).astype(np.int64)
    return clipped


def _lab_times(rng: np.random.Generator, stay: Stay, offset_seconds: int) -> np.ndarray:
    """An admission draw, then 05:00 local each morning and some evenings at 17:00."""
    times = [stay.admitted_at + int(rng.integers(1800, 5400))]
    local_day = (stay.admitted_at + offset_seconds) // DAY * DAY - offset_seconds
    second_draw = 0.3 + (0.4 if stay.severity > 1.0 or stay.deteriorated else 0.0)
    day = local_day + DAY
    while day + 5 * HOUR < stay.discharged_at - HOUR:
        times.append(day + 5 * HOUR + int(rng.integers(-1800, 1801)))
        if rng.random() < second_draw and day + 17 * HOUR < stay.discharged_at - HOUR:
            times.append(day + 17 * HOUR + int(rng.integers(-1800, 1801)))
        day += DAY
    return np.array(times, dtype=np.int64)


def stay_observations(
    rng: np.random.Generator, maker: ObservationMaker, baseline: Baseline, stay: Stay
) -> DischargeLabs:
    """Write the stay's vitals and labs into ``maker.out``; return the last labs before discharge."""
    patient = maker.patient
    bump = (
        (float(rng.uniform(stay.admitted_at, stay.discharged_at)), 0.6)
        if (not stay.deteriorated and rng.random() < 0.25)
        else (0.0, 0.0)
    )
    copd, htn, diabetes, ckd = (
        patient.has(codes.COPD),
        patient.has(codes.HYPERTENSION),
        patient.has(codes.DIABETES),
        patient.has(codes.CKD),
    )

    def encounter_at(moment: int) -> str:
        if stay.icu_id is not None and stay.event_at is not None and stay.icu_end is not None:
            if stay.event_at <= moment < stay.icu_end:
                return stay.icu_id
        return stay.id

    maker.weight(stay.id, stay.admitted_at + 1200, baseline.weight_kg + float(rng.normal(0, 1.0)))
    times = _schedule(rng, stay.admitted_at, stay.discharged_at, VITALS_EVERY, 1800)
    severity, ramp = _latent(stay, times, *bump)
    fever = 0.9 * stay.sepsis * np.exp(-(times - stay.admitted_at) / (48.0 * HOUR))
    n = len(times)
    noise = rng.normal(size=(6, n))
    hr = np.clip(78 + baseline.heart_rate + 9 * severity + 28 * ramp + 8 * fever + 5 * noise[0], 30, 220)
    rr = np.clip(16 + 1.6 * severity + 9 * ramp + copd + 1.8 * noise[1], 6, 60)
    temp = 36.9 + 0.2 * severity + fever + 0.3 * ramp + 0.25 * noise[2]
    spo2 = np.clip(97 - 0.9 * severity - 8 * ramp - 2 * copd + 1.2 * noise[3], 60, 100)
    sbp = np.clip(127 + baseline.systolic + 10 * htn - 6 * severity - 32 * ramp + 9 * noise[4], 50, 240)
    dbp = np.clip(0.55 * sbp + 8 + 6 * noise[5], 25, 140)
    issued = times + rng.integers(60, 1200, n)
    rows = np.column_stack([hr, rr, temp, spo2, sbp, dbp]).tolist()
    for moment, published, values in zip(times.tolist(), issued.tolist(), rows, strict=True):
        maker.vital_set(encounter_at(moment), moment, published, tuple(values))

    draws = _lab_times(rng, stay, patient.site.utc_offset_minutes * 60)
    severity, ramp = _latent(stay, draws, *bump)
    septic = stay.sepsis * np.exp(-(draws - stay.admitted_at) / (72.0 * HOUR))
    m = len(draws)
    noise = rng.normal(size=(10, m))
    wbc = np.clip(8 + 1.8 * severity + 6 * septic + 4 * ramp + 1.5 * noise[0], 0.5, 60)
    hgb = np.clip(13.6 - 1.2 * patient.female - 0.6 * severity - 1.0 * ckd + 0.8 * noise[1], 4, 20)
    plt = np.clip(250 - 25 * severity - 80 * ramp + 40 * noise[2], 5, 900)
    creat = baseline.creatinine_mg_dl * np.exp(0.12 * severity + 0.55 * ramp + 0.08 * noise[3])
    glucose = np.clip((165 if diabetes else 102) + 12 * severity + 20 * noise[4], 40, 600)
    lactate_weight = stay.lactate_signal
    lactate = np.exp(math.log(1.1) + lactate_weight * (0.18 * severity + 0.95 * ramp) + 0.22 * noise[5])
    sodium = 139 - 0.8 * severity + 2.5 * noise[6]
    potassium = np.clip(4.2 + 0.4 * ckd + 0.3 * ramp + 0.35 * noise[7], 2.0, 8.0)
    bilirubin = 0.6 * np.exp(0.15 * severity + 0.6 * ramp + 0.25 * noise[8])
    bun = 14 * (creat / 0.9) ** 0.9 * np.exp(0.15 * noise[9])
    turnaround = np.exp(rng.normal(math.log(75 * 60), 0.6, m)).clip(1800, 8 * HOUR).astype(np.int64)
    late = rng.random(m) < LATE_LAB_SHARE
    turnaround[late] += rng.integers(12 * HOUR, 72 * HOUR, int(late.sum()))
    wants_lactate = (rng.random(m) < 0.15) | (severity > 0.6) | (ramp > 0.15) | bool(stay.sepsis)
    wants_lactate[0] = True
    columns = [a.tolist() for a in (wbc, hgb, plt, creat, glucose, lactate, sodium, potassium, bilirubin, bun)]
    for k, (moment, delay) in enumerate(zip(draws.tolist(), turnaround.tolist(), strict=True)):
        encounter_id, published = encounter_at(moment), moment + delay
        for measure, column in zip(
            (codes.WBC, codes.HEMOGLOBIN, codes.PLATELETS, codes.CREATININE, codes.GLUCOSE),
            columns[:5],
            strict=True,
        ):
            maker.lab(measure, column[k], encounter_id, moment, published)
        if wants_lactate[k]:
            maker.lab(codes.LACTATE, columns[5][k], encounter_id, moment, published)
        for measure, column in zip(
            (codes.SODIUM, codes.POTASSIUM, codes.BILIRUBIN, codes.BUN), columns[6:], strict=True
        ):
            maker.lab(measure, column[k], encounter_id, moment, published)
    last = m - 1
    return DischargeLabs(columns[3][last], columns[1][last], columns[6][last], columns[0][last])


def visit_observations(
    rng: np.random.Generator,
    maker: ObservationMaker,
    baseline: Baseline,
    encounter_id: str,
    start: int,
    *,
    emergency: bool,
) -> None:
    """One set of vitals (triage or clinic), a weight at clinic visits, and HbA1c for some diabetics."""
    patient = maker.patient
    noise = rng.normal(size=6)
    copd, htn = patient.has(codes.COPD), patient.has(codes.HYPERTENSION)
    acute = 0.8 if emergency else 0.0
    values = (
        78 + baseline.heart_rate + 8 * acute + 5 * noise[0],
        16 + 2 * acute + copd + 1.5 * noise[1],
        36.8 + 0.3 * acute + 0.2 * noise[2],
        min(100.0, 97.5 - 2 * copd - acute + noise[3]),
        127 + baseline.systolic + 10 * htn + 9 * noise[4],
        78 + 0.3 * baseline.systolic + 6 * noise[5],
    )
    moment = start + int(rng.integers(300, 1200))
    maker.vital_set(encounter_id, moment, moment + int(rng.integers(60, 900)), values)
    if not emergency:
        maker.weight(encounter_id, moment, baseline.weight_kg + float(rng.normal(0, 1.5)))
        if patient.has(codes.DIABETES) and rng.random() < 0.5:
            drawn = moment + 600
            maker.lab(
                codes.HBA1C,
                float(np.clip(rng.normal(7.6, 1.1), 5.0, 14.0)),
                encounter_id,
                drawn,
                drawn + int(rng.integers(6, 48)) * HOUR,
            )
