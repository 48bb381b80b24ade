"""Small facts tables in FACTS_SCHEMA form, for kernel tests that need exact control of times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from vitalops.core.ids import content_hash
from vitalops.lake.schema import FACTS_SCHEMA

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def fact(
    patient: str,
    kind: str,
    concept: str | None,
    effective: datetime,
    *,
    known: datetime | None = None,
    value: float | None = None,
    code: str | None = None,
    end: datetime | None = None,
    encounter: str | None = None,
    source: str | None = None,
    status: str | None = None,
    site: str = "north",
) -> dict:
    known = known or effective
    source = source or content_hash([patient, kind, concept, effective.isoformat(), value, code])[:16]
    row = {
        "patient_key": patient, "site": site, "month": effective.strftime("%Y-%m"), "kind": kind,
        "concept": concept, "code_system": None, "code": None, "value_num": value, "value_code": code,
        "unit": None, "status": status, "encounter_key": encounter, "effective_at": effective,
        "effective_end": end, "known_at": known, "source_type": kind, "source_id": source,
        "source_version": known.isoformat(), "batch_id": "test",
    }
    row["fact_id"] = content_hash([source, known.isoformat(), concept, value, code, str(end)])
    return row


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=FACTS_SCHEMA)


def patient(key: str, *, born: datetime, sex: str = "female", site: str = "north") -> list[dict]:
    return [
        fact(key, "demographic", "birth", born, known=T0 - timedelta(days=400), site=site,
             source=f"pt-{key}"),
        fact(key, "demographic", "sex", T0 - timedelta(days=400), code=sex, site=site, source=f"pt-{key}"),
    ]


def inpatient_stay(
    key: str, encounter: str, admit: datetime, discharge: datetime, site: str = "north"
) -> list[dict]:
    """v1 in progress known at admission, v2 finished known at discharge."""
    return [
        fact(key, "encounter", "encounter", admit, code="IMP", encounter=encounter, source=encounter,
             status="in-progress", site=site),
        fact(key, "encounter", "encounter", admit, known=discharge, code="IMP", encounter=encounter,
             source=encounter, end=discharge, status="finished", site=site),
    ]
