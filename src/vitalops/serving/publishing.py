"""Predictions published to the EHR as FHIR RiskAssessments, off the response path, and audited.

When an installation names the EHR's FHIR server (``VITALOPS_FHIR_PUBLISH_URL``), each served
prediction made from the EHR's own FHIR resources (so its subject is the EHR's ``Patient/<id>``)
is POSTed there by the worker's publication thread after the response (``fhir.publish``): the
clinician's answer never waits for the EHR. The outcome is audited on the prediction:
``prediction.published`` with the resource's location at the EHR, or ``prediction.publish_failed``
with the HTTP status, never the resource.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vitalops.audit import append
from vitalops.auth import Principal
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.errors import VitalOpsError
from vitalops.fhir.publish import RiskAssessmentPublisher
from vitalops.fhir.smart import backend_auth

PUBLISH_SCOPE = "system/RiskAssessment.write"


def publisher_from_settings(settings: Settings) -> RiskAssessmentPublisher | None:
    """The installation's publisher, or None when no FHIR server to publish to is configured."""
    if settings.fhir_publish_url is None:
        return None
    return RiskAssessmentPublisher(settings.fhir_publish_url, auth=backend_auth(settings, scope=PUBLISH_SCOPE))


def patient_reference(resources: list[dict[str, Any]] | None) -> str | None:
    """``Patient/<id>`` of the one Patient among ``resources`` (None without one, or with several)."""
    ids = {str(r.get("id")) for r in resources or () if r.get("resourceType") == "Patient" and r.get("id")}
    return f"Patient/{ids.pop()}" if len(ids) == 1 else None


def publication_work(database: Database, publisher: RiskAssessmentPublisher, actor: Principal,
                     prediction_id: str, resource: dict[str, Any]) -> Callable[[], None]:
    """The work of publishing ``resource`` (the RiskAssessment of ``prediction_id``) and auditing it."""

    def work() -> None:
        try:
            published = publisher.publish(resource)
        except VitalOpsError as error:
            with database.session() as session:
                append(session, actor=actor, action="prediction.publish_failed", object_type="prediction",
                       object_id=prediction_id, payload={"reason": str(error)[:200]})
            raise
        with database.session() as session:
            append(session, actor=actor, action="prediction.published", object_type="prediction",
                   object_id=prediction_id, payload={"location": published.location, "attempts": published.attempts})

    return work
