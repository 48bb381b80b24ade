"""Small FHIR R4 resources for tests, in the shapes EHR exports use."""

from __future__ import annotations

from typing import Any

SITE_TAG = "https://vitalops.dev/fhir/site"


def meta(updated: str, version: str = "1", site: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"versionId": version, "lastUpdated": updated}
    if site:
        value["tag"] = [{"system": SITE_TAG, "code": site}]
    return value


def patient(pid: str = "p1", *, birth: str = "1950-03-04", updated: str = "2024-01-01T00:00:00Z") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "meta": meta(updated), "gender": "female", "birthDate": birth}


def observation(
    oid: str, *, code: str = "8867-4", value: float | None = 80, unit: str | None = "/min", pid: str = "p1",
    effective: str = "2024-05-01T10:00:00+02:00", issued: str | None = "2024-05-01T09:00:00Z",
    updated: str = "2024-05-01T09:30:00Z", **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "meta": meta(updated), "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": effective,
    }
    if issued:
        resource["issued"] = issued
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity["unit"] = unit
        resource["valueQuantity"] = quantity
    resource.update(extra)
    return resource


def encounter(eid: str, *, version: str, updated: str, start: str, end: str | None = None, status: str = "finished",
              pid: str = "p1", disposition: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter", "id": eid, "meta": meta(updated, version), "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": f"Patient/{pid}"}, "period": {"start": start, **({"end": end} if end else {})},
    }
    if disposition:
        resource["hospitalization"] = {"dischargeDisposition": {"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": disposition}]}}
    return resource


def condition(cid: str, *, pid: str = "p1", onset: str | None = None, recorded: str | None = None,
              code: str = "44054006", **extra: Any) -> dict[str, Any]:
    """A Condition (SNOMED CT type 2 diabetes by default) with an onset and/or a recorded date."""
    resource: dict[str, Any] = {
        "resourceType": "Condition", "id": cid, "meta": meta("2024-06-01T00:00:00Z"),
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]}, **extra,
    }
    if onset is not None:
        resource["onsetDateTime"] = onset
    if recorded is not None:
        resource["recordedDate"] = recorded
    return resource
