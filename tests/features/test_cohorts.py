"""Cohort exclusions: no scoring inside an ICU stay (as known then) or after a stay's deterioration
event; no readmission index at a death or at a move within one hospital stay."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pyarrow.compute as pc
import pytest

from tests.features.fact_rows import T0, fact, hours, inpatient_stay, patient, table
from vitalops.features.cohorts import build_index
from vitalops.features.definitions import CohortDef
from vitalops.features.facts_view import register_facts
from vitalops.lake.facts import FactsStore

AS_OF = hours(24 * 60)


def _times(facts: list[dict], cohort: dict, patient_key: str = "p1") -> list[float]:
    con = duckdb.connect()
    register_facts(con, table(facts))
    as_of_us = int(AS_OF.timestamp() * 1_000_000)
    index = build_index(con, CohortDef.model_validate(cohort), as_of_us).to_pylist()
    return [(row["index_time"] - T0) / timedelta(hours=1) for row in index if row["patient_key"] == patient_key]


def _icu_stay(key: str, encounter: str, start: float, end: float, *, known_late_by: float = 0.0) -> list[dict]:
    """An ICU encounter nested in a stay: v1 in progress (known at start + delay), v2 ended (known at end)."""
    first_known = hours(start + known_late_by)
    rows = []
    for version, known, until in (("1", first_known, None), ("2", hours(end), hours(end))):
        for concept, code in (("encounter", "IMP"), ("icu_stay", "1027-2")):
            row = fact(key, "encounter", concept, hours(start), known=known, code=code, encounter=encounter,
                       source=encounter, end=until)
            row["source_version"] = version
            rows.append(row)
    return rows


def _ward_stay_with_icu(known_late_by: float = 0.0) -> list[dict]:
    rows = patient("p1", born=T0 - timedelta(days=365.25 * 70))
    rows += inpatient_stay("p1", "stay", hours(0), hours(48))
    rows += _icu_stay("p1", "icu", 10, 30, known_late_by=known_late_by)
    return rows


EVERY_4H = {"schedule": "every", "every": "4h", "encounter_classes": ["IMP"]}


def test_without_exclusions_the_icu_stay_is_scored_like_any_stay() -> None:
    times = _times(_ward_stay_with_icu(), EVERY_4H)
    assert times == [4, 8, 12, 14, 16, 18, 20, 22, 24, 26, 28, 32, 36, 40, 44]


def test_no_index_time_inside_an_icu_stay_as_known_at_that_time() -> None:
    cohort = {**EVERY_4H, "exclude_active": ["icu_stay"]}
    assert _times(_ward_stay_with_icu(), cohort) == [4, 8, 32, 36, 40, 44]
    # Recorded 5 h late: until then nobody knew the patient was in the ICU, and the bedside model
    # would have scored them, so the training rows at 12 h keep them too.
    assert _times(_ward_stay_with_icu(known_late_by=5), cohort) == [4, 8, 12, 14, 32, 36, 40, 44]


def test_a_stay_leaves_the_cohort_at_its_first_icu_transfer_or_death() -> None:
    cohort = {**EVERY_4H, "exclude_active": ["icu_stay"],
              "stop_after": [{"kind": "encounter", "concept": "icu_stay"}, {"kind": "outcome", "concept": "death"}]}
    assert _times(_ward_stay_with_icu(), cohort) == [4, 8]
    assert _times(_ward_stay_with_icu(known_late_by=5), cohort) == [4, 8]  # the event is the sampling design
    died = patient("p1", born=T0 - timedelta(days=365.25 * 70))
    died += inpatient_stay("p1", "stay", hours(0), hours(48))
    died.append(fact("p1", "outcome", "death", hours(21), known=hours(22)))
    assert _times(died, cohort) == [4, 8, 12, 16, 20]


def test_events_before_the_stay_do_not_end_it() -> None:
    rows = _ward_stay_with_icu()
    rows += inpatient_stay("p1", "later", hours(24 * 10), hours(24 * 10 + 13))
    cohort = {**EVERY_4H, "stop_after": [{"kind": "encounter", "concept": "icu_stay"}]}
    assert _times(rows, cohort)[-3:] == [24 * 10 + 4, 24 * 10 + 8, 24 * 10 + 12]


def _discharges() -> list[dict]:
    rows = patient("p1", born=T0 - timedelta(days=365.25 * 70))
    rows += _ward_stay_with_icu()[2:]  # discharged home at 48 h, after an ICU stay ending at 30 h
    rows.append(fact("p1", "encounter", "discharge_disposition", hours(48), known=hours(48), code="home",
                     encounter="stay", source="stay"))
    rows += inpatient_stay("p1", "fatal", hours(24 * 20), hours(24 * 25))
    rows.append(fact("p1", "encounter", "discharge_disposition", hours(24 * 25), known=hours(24 * 25), code="exp",
                     encounter="fatal", source="fatal"))
    return rows


DISCHARGE = {"schedule": "discharge", "encounter_classes": ["IMP"]}


def test_readmission_index_excludes_deaths_and_moves_within_a_stay() -> None:
    assert _times(_discharges(), DISCHARGE) == [30, 48, 24 * 25]
    assert _times(_discharges(), {**DISCHARGE, "exclude_dispositions": ["exp"]}) == [30, 48]
    assert _times(_discharges(), {**DISCHARGE, "exclude_transfers": True}) == [48, 24 * 25]
    both = {**DISCHARGE, "exclude_dispositions": ["exp"], "exclude_transfers": True}
    assert _times(_discharges(), both) == [48]


@pytest.mark.parametrize(
    ("cohort", "message"),
    [
        ({**DISCHARGE, "stop_after": [{"kind": "outcome", "concept": "death"}]}, "stop_after applies to"),
        ({**EVERY_4H, "exclude_dispositions": ["exp"]}, "apply to schedule 'discharge'"),
        ({**EVERY_4H, "exclude_transfers": True}, "apply to schedule 'discharge'"),
        ({**EVERY_4H, "exclude_active": ["ward"]}, "Input should be 'icu_stay'"),
    ],
)
def test_misplaced_exclusions_are_refused(cohort: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CohortDef.model_validate(cohort)


def test_demo_cohorts_on_the_synthetic_hospital(hospital_lake, demo_sets) -> None:
    facts = FactsStore(hospital_lake.lake_root).dataset().to_table()
    icu = facts.filter(pc.equal(facts.column("concept"), "icu_stay")).to_pylist()
    transfers: dict[str, list] = {}
    for row in icu:
        transfers.setdefault(row["patient_key"], []).append(row["effective_at"])
    assert transfers, "the synthetic hospital should have ICU stays"
    admitted: dict[str, object] = {}
    for row in facts.filter(pc.equal(facts.column("concept"), "encounter")).to_pylist():
        key = row["encounter_key"]
        admitted[key] = min(row["effective_at"], admitted.get(key, row["effective_at"]))
    deterioration = demo_sets["deterioration"]
    for row in deterioration.table.select(["patient_key", "encounter_key", "index_time"]).to_pylist():
        stay_start = admitted[row["encounter_key"]]
        # never in the ICU, and never after an ICU transfer during the same stay
        assert not any(stay_start <= moved <= row["index_time"] for moved in transfers.get(row["patient_key"], ()))
    dispositions = facts.filter(pc.equal(facts.column("concept"), "discharge_disposition")).to_pylist()
    expired = {row["encounter_key"] for row in dispositions if row["value_code"] == "exp"}
    assert expired, "the synthetic hospital should have deaths in hospital"
    nested_icu_encounters = {row["encounter_key"] for row in icu if row["code"] is not None}  # by service type
    assert nested_icu_encounters
    readmission = demo_sets["readmission"]
    indexed = set(readmission.table.column("encounter_key").to_pylist())
    assert indexed and not indexed & (expired | nested_icu_encounters)
