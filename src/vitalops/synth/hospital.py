"""The synthetic multi-site hospital: ``generate_hospital`` simulates every patient and writes the export.

Each patient is simulated from its own random streams (seeded from the run's seed and the
patient's number), so a run is reproducible byte for byte and a patient's history does not
depend on how many others are generated. Patients are spread round-robin over the sites.

Patient resources are bitemporal too: version "1" at registration; a patient who dies in
hospital gets version "2" at the time of death carrying ``deceasedDateTime`` (so death is never
known before it happened). Inpatient encounters come in two versions: see
``vitalops.synth.encounters``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from vitalops.errors import InvalidInput
from vitalops.synth.codes import CHRONIC_CONDITIONS
from vitalops.synth.defects import plant_defects
from vitalops.synth.encounters import MEDIAN_STAY_DAYS, Stay, plan_stay, stay_encounters, visit_encounter
from vitalops.synth.fhir_json import DAY, HOUR, YEAR, IdMint
from vitalops.synth.observations import Baseline, ObservationMaker, stay_observations, visit_observations
from vitalops.synth.orders import OrderWriter
from vitalops.synth.population import (
    PatientRecord,
    SiteProfile,
    build_sites,
    draw_patient,
    logistic,
    patient_resource,
    readmission_logit,
)
from vitalops.synth.scenarios import Scenario
from vitalops.synth.summary import GroundTruthTally, SynthSummary
from vitalops.synth.writer import RESOURCE_TYPES, BulkWriter

DEFAULT_START = date(2024, 1, 1)
#: The largest admission-rate multiplier (beyond it stays would overlap more than they follow each other).
MAX_ADMISSION_SCALE = 20.0
DEFAULT_END = date(2025, 12, 31)
READMISSION_WINDOW = 30 * DAY
AMBULATORY_PER_YEAR = 1.5
EMERGENCY_PER_YEAR = 0.15
_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$")


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _utc_text(moment: int | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def admission_rate_per_year(patient: PatientRecord, moment: int, scenario: Scenario, scale: float = 1.0) -> float:
    """Unplanned admissions per year (times ``scale``); after a population shift, older and sicker
    patients come more often."""
    age_decades = (patient.age_at(moment) - 65.0) / 10.0
    logit = 0.3 * patient.comorbidity_count + 0.25 * age_decades + 0.35 * patient.frailty
    if scenario.population_shifted(patient.site.index, moment):
        logit += 0.6 * age_decades + 0.3 * (patient.comorbidity_count - 1.5)
    return 0.3 * scale * math.exp(logit)


def check_arguments(
    *, patients: int, sites: Sequence[str], seed: int, scenario: str | None, start: date, end: date
) -> Scenario:
    """Validate a run's arguments and return its scenario; raises InvalidInput naming the bad argument."""
    if patients < 1:
        raise InvalidInput("patients must be at least 1", details={"field": "patients"})
    if not sites:
        raise InvalidInput("at least one site is needed", details={"field": "sites"})
    if len(set(sites)) != len(sites):
        raise InvalidInput("site names must be unique", details={"field": "sites"})
    for site in sites:
        if not _SITE_NAME.match(site):
            raise InvalidInput(
                f"site name {site!r} must be 1-64 letters, digits, '-' or '.'", details={"field": "sites"}
            )
    if seed < 0:
        raise InvalidInput("seed must be zero or positive", details={"field": "seed"})
    if (end - start).days < 60:
        raise InvalidInput("the period must span at least 60 days (end after start)", details={"field": "end"})
    return Scenario.choose(scenario, start, end, list(sites))


class _PatientSimulation:
    """Simulates one patient's whole history in the period and collects its resources."""

    def __init__(
        self, seed: int, site: SiteProfile, index: int, start_at: int, end_at: int, scenario: Scenario,
        admission_scale: float = 1.0, warmup_days: int = 0,
    ) -> None:
        self.rng = np.random.default_rng([seed, index, 0])
        self.ids = IdMint(np.random.default_rng([seed, index, 1]))
        self.start_at, self.end_at, self.scenario = start_at, end_at, scenario
        self.admission_scale = admission_scale
        self.warmup = warmup_days * DAY
        self.seed, self.index = seed, index
        self.patient = draw_patient(self.rng, self.ids, site, index, start_at)
        self.baseline = Baseline.draw(self.rng, self.patient)
        self.observations = ObservationMaker(self.patient, self.ids, scenario)
        self.orders = OrderWriter(self.patient, self.ids, self.rng)
        self.encounters: list[dict[str, Any]] = []
        self.stays: list[Stay] = []
        self.truth: list[dict[str, Any]] = []

    def run(self) -> None:
        self.orders.chronic_conditions()
        self.orders.home_medications()
        self._admissions()
        self._visits("AMB", AMBULATORY_PER_YEAR * (1 + 0.3 * self.patient.comorbidity_count))
        self._visits("EMER", EMERGENCY_PER_YEAR * math.exp(0.25 * self.patient.comorbidity_count))
        self.truth.insert(0, self._patient_truth())

    def _gap(self, moment: int, rng: np.random.Generator | None = None) -> int:
        rate = admission_rate_per_year(self.patient, moment, self.scenario, self.admission_scale)
        return int((rng or self.rng).exponential(1.0 / rate) * YEAR)

    def _first_admission(self) -> int:
        """When the patient is first admitted in the period. With a warm-up, the admission process
        runs (timing only, on its own random stream) from ``warmup`` before the period, each stay
        followed by the readmission window, so the period opens in steady state instead of with
        every patient's first admission at once (which front-loads the frequent, older patients)."""
        if not self.warmup:
            return self.start_at + self._gap(self.start_at)
        rng = np.random.default_rng([self.seed, self.index, 2])
        admit = self.start_at - self.warmup + self._gap(self.start_at - self.warmup, rng)
        while admit < self.start_at:
            discharged = admit + int(MEDIAN_STAY_DAYS * DAY)
            admit = discharged + READMISSION_WINDOW + self._gap(discharged, rng)
        return admit

    def _admissions(self) -> None:
        rng, patient = self.rng, self.patient
        admit = self._first_admission()
        previous: dict[str, Any] | None = None
        while admit < self.end_at:
            admit = admit // 60 * 60
            stay = plan_stay(rng, self.ids, patient, admit, self.scenario)
            if previous is not None:
                previous["readmission_encounter_id"] = stay.id
            self.encounters.extend(stay_encounters(patient, stay))
            if stay.ed_id is not None and stay.ed_start is not None:
                visit_observations(rng, self.observations, self.baseline, stay.ed_id, stay.ed_start, emergency=True)
            labs = stay_observations(rng, self.observations, self.baseline, stay)
            self.orders.stay_orders(stay)
            prior = sum(1 for s in self.stays if admit - 365 * DAY <= s.admitted_at < admit)
            self.stays.append(stay)
            record = self._stay_truth(stay, prior, labs.abnormal_count())
            self.truth.append(record)
            previous = None
            if stay.died_at is not None:
                patient.deceased_at = stay.died_at
                break
            risk = logistic(
                readmission_logit(
                    patient,
                    stay.discharged_at,
                    prior_admissions=prior,
                    los_days=stay.los_days,
                    abnormal_labs=labs.abnormal_count(),
                )
            )
            readmitted = bool(rng.random() < risk)
            if readmitted:
                admit = stay.discharged_at + int(rng.uniform(1.0, 29.5) * DAY)
                previous = record
            else:
                admit = stay.discharged_at + READMISSION_WINDOW + self._gap(stay.discharged_at)
            record["readmission_risk"] = round(risk, 6)
            record["readmitted_30d"] = readmitted
            record["readmission_censored"] = (
                admit >= self.end_at if readmitted else stay.discharged_at + READMISSION_WINDOW > self.end_at
            )

    def _busy(self, start: int, end: int) -> bool:
        if self.patient.deceased_at is not None and end >= self.patient.deceased_at:
            return True
        for stay in self.stays:
            opened = stay.ed_start if stay.ed_start is not None else stay.admitted_at
            if start < stay.discharged_at + 12 * HOUR and end > opened - 12 * HOUR:
                return True
        return False

    def _visits(self, encounter_class: str, per_year: float) -> None:
        rng, patient = self.rng, self.patient
        years = (self.end_at - self.start_at) / YEAR
        count = int(rng.poisson(per_year * years))
        days = np.sort(rng.integers(self.start_at, self.end_at, count))
        offset = patient.site.utc_offset_minutes * 60
        for moment in days.tolist():
            local_midnight = (moment + offset) // DAY * DAY - offset
            if encounter_class == "AMB":
                start = local_midnight + int(rng.integers(8 * 4, 17 * 4)) * 900
                end = start + int(rng.integers(2, 5)) * 900
            else:
                start = moment // 60 * 60
                end = start + int(rng.integers(2 * 4, 8 * 4)) * 900
            if self._busy(start, end) or end >= self.end_at:
                continue
            encounter_id = self.ids.new()
            self.encounters.append(visit_encounter(patient, encounter_id, encounter_class, start, end))
            visit_observations(
                rng,
                self.observations,
                self.baseline,
                encounter_id,
                start,
                emergency=encounter_class == "EMER",
            )

    def _stay_truth(self, stay: Stay, prior: int, abnormal_labs: int) -> dict[str, Any]:
        return {
            "kind": "stay",
            "encounter_id": stay.id,
            "patient_id": self.patient.id,
            "site": self.patient.site.name,
            "admitted_at": _utc_text(stay.admitted_at),
            "discharged_at": _utc_text(stay.discharged_at),
            "los_days": round(stay.los_days, 3),
            "age_at_admission": round(self.patient.age_at(stay.admitted_at), 2),
            "comorbidity_count": self.patient.comorbidity_count,
            "severity": round(stay.severity, 4),
            "sepsis": stay.sepsis,
            "deterioration_risk": round(stay.deterioration_risk, 6),
            "deteriorated": stay.deteriorated,
            "event_type": stay.event_type,
            "event_at": _utc_text(stay.event_at),
            "icu_encounter_id": stay.icu_id,
            "died_at": _utc_text(stay.died_at),
            "population_shifted": stay.shifted_population,
            "lactate_signal": stay.lactate_signal,
            "warning_signs": stay.warning_signs,
            "prior_admissions_365d": prior,
            "abnormal_discharge_labs": abnormal_labs,
            "readmission_risk": None,
            "readmitted_30d": None,
            "readmission_censored": None,
            "readmission_encounter_id": None,
        }

    def _patient_truth(self) -> dict[str, Any]:
        patient = self.patient
        return {
            "kind": "patient",
            "patient_id": patient.id,
            "site": patient.site.name,
            "gender": "female" if patient.female else "male",
            "age_at_start": round(patient.age_at(self.start_at), 2),
            "comorbidities": [d.key for d, present in zip(CHRONIC_CONDITIONS, patient.chronic, strict=True) if present],
            "frailty": round(patient.frailty, 4),
            "inpatient_stays": len(self.stays),
            "deceased_at": _utc_text(patient.deceased_at),
        }

    def patient_versions(self) -> list[dict[str, Any]]:
        patient = self.patient
        versions = [patient_resource(patient, version="1", last_updated=patient.registered_at, deceased_at=None)]
        if patient.deceased_at is not None:
            versions.append(
                patient_resource(
                    patient, version="2", last_updated=patient.deceased_at, deceased_at=patient.deceased_at
                )
            )
        return versions


def generate_hospital(
    out_dir: Path,
    *,
    patients: int,
    sites: Sequence[str],
    seed: int,
    scenario: str | None = None,
    start: date | None = None,
    end: date | None = None,
    progress: Callable[[int], None] | None = None,
    defects: bool = False,
    admission_scale: float = 1.0,
    warmup_days: int = 0,
) -> SynthSummary:
    """Simulate ``patients`` patients over ``sites`` and write the bulk export into ``out_dir``.

    ``progress`` (optional) is called with the number of patients done so far. ``defects`` plants a
    few realistic feed defects into the last site's export (see ``vitalops.synth.defects``).
    ``admission_scale`` multiplies every patient's admission rate (a population drawn from those a
    hospital admits, for more inpatient-days from fewer patients). ``warmup_days`` starts the
    admission process that long before the period (nothing of it is written), so the period opens in
    steady state. ``scenario`` is a name, or
    ``NAME@SITE`` items separated by commas (see ``vitalops.synth.scenarios``). Raises
    InvalidInput for bad arguments (unknown scenario, bad site names, an empty or short period,
    an output folder that cannot be written).
    """
    start = start or DEFAULT_START
    end = end or DEFAULT_END
    site_names = list(sites)
    chosen = check_arguments(patients=patients, sites=site_names, seed=seed, scenario=scenario, start=start, end=end)
    if not 0 < admission_scale <= MAX_ADMISSION_SCALE:
        raise InvalidInput(f"admission_scale must be above 0 and at most {MAX_ADMISSION_SCALE:g}",
                           details={"field": "admission_scale"})
    if not 0 <= warmup_days <= 3650:
        raise InvalidInput("warmup_days must be 0 to 3650", details={"field": "warmup_days"})
    start_at, end_at = _epoch(start), _epoch(end) + DAY
    profiles = build_sites(site_names)
    tally = GroundTruthTally()
    out_dir = Path(out_dir)
    with BulkWriter(out_dir, site_names) as writer:
        for index in range(patients):
            site = profiles[index % len(profiles)]
            simulation = _PatientSimulation(seed, site, index, start_at, end_at, chosen, admission_scale,
                                            warmup_days)
            simulation.run()
            writer.write_many(site.name, "Patient", simulation.patient_versions())
            writer.write_many(site.name, "Encounter", simulation.encounters)
            writer.write_many(site.name, "Observation", simulation.observations.out)
            writer.write_many(site.name, "Condition", simulation.orders.conditions)
            writer.write_many(site.name, "MedicationRequest", simulation.orders.requests)
            writer.write_many(site.name, "MedicationAdministration", simulation.orders.administrations)
            writer.write_many(site.name, "Procedure", simulation.orders.procedures)
            writer.ground_truth(simulation.truth)
            writer.plant(simulation.patient.identity)
            for record in simulation.truth:
                if record["kind"] == "stay":
                    tally.add(record)
            if progress is not None:
                progress(index + 1)
        writer.write_identifiers()
        per_site = {site: dict(counts) for site, counts in writer.counts.items()}
    planted = plant_defects(out_dir, site_names[-1], seed) if defects else {}
    totals = {t: sum(counts[t] for counts in per_site.values()) for t in RESOURCE_TYPES}
    return SynthSummary(
        out_dir=str(out_dir),
        patients=patients,
        sites=site_names,
        seed=seed,
        scenario=chosen.name,
        change_date=chosen.change_date,
        start=start.isoformat(),
        end=end.isoformat(),
        resources=totals,
        per_site=per_site,
        files=writer.files(),
        planted_identifiers=writer.planted_count(),
        ground_truth=tally.summary(),
        defects=planted,
    )
