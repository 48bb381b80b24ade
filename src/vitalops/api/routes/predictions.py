"""``/v1/models/{name}/predict``, ``/v1/predictions/{id}`` and ``/v1/outcomes``: predictions for care.

Thin: the serving service routes, scores, explains, logs and audits. A shadow challenger is scored by
the worker's shadow thread (``serving.shadows``), off the response path.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from vitalops.api.deps import DatabaseDep, PrincipalDep, SettingsDep
from vitalops.auth import Principal
from vitalops.core.logging import request_id_var
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.fhir.risk_assessment import build_risk_assessment
from vitalops.review import ReviewPolicy, review_if_needed
from vitalops.serving import Prediction, PredictionRequest, ServingContext, get_prediction, predict, record_outcome
from vitalops.serving.log_writer import LogWriter
from vitalops.serving.publishing import patient_reference, publication_work
from vitalops.serving.service import PredictionOutcome, default_context

router = APIRouter(tags=["predictions"])
_context_lock = threading.Lock()


async def serving_context(request: Request, settings: SettingsDep, database: DatabaseDep) -> ServingContext:
    """The app's serving context, made on first use in the thread pool (loaded versions stay warm for
    the worker's life; concurrent requests share their log commits); later calls read it in place."""
    context: ServingContext | None = getattr(request.app.state, "serving", None)
    if context is None:
        context = await run_in_threadpool(_make_context, request, settings, database)
    return context


def _make_context(request: Request, settings: Settings, database: Database) -> ServingContext:
    with _context_lock:
        context: ServingContext | None = getattr(request.app.state, "serving", None)
        if context is None:
            context = default_context(settings, writer=LogWriter(database))
            request.app.state.serving = context
    return context


ContextDep = Annotated[ServingContext, Depends(serving_context)]


class PredictBody(BaseModel):
    site: str = Field(min_length=1, max_length=64)
    features: dict[str, float | None] | None = Field(default=None, max_length=2000)
    patient_key: str | None = Field(default=None, min_length=1, max_length=64)
    resources: list[dict[str, Any]] | None = Field(default=None, max_length=5000)
    at: datetime | None = None


class BatchBody(BaseModel):
    rows: list[PredictBody] = Field(min_length=1, max_length=1000)


class OutcomeBody(BaseModel):
    prediction_id: str = Field(min_length=1, max_length=40)
    outcome: Literal[0, 1]
    observed_at: datetime
    source: str = Field(default="ehr", min_length=1, max_length=32)


def _reviewed(database: Database, actor: Principal, settings: Settings, prediction: Prediction) -> dict[str, Any]:
    """Queue the prediction for clinician review when a review rule holds (``vitalops.review.rules``)."""
    reasons = review_if_needed(database, actor, prediction, ReviewPolicy.from_settings(settings))
    return {"queued": bool(reasons), "reasons": [reason.to_dict() for reason in reasons]}


def _with_fhir(prediction: Prediction, request: Request, patient: str | None = None) -> dict[str, Any]:
    # The card's route, spelled out: reversing the route table on every prediction costs more than scoring.
    card = f"{str(request.base_url).rstrip('/')}/v1/models/{prediction.model}/versions/{prediction.version}/card"
    resource = build_risk_assessment(
        prediction_id=prediction.id, model=prediction.model, version=prediction.version, outcome=prediction.outcome,
        probability=prediction.score, band=prediction.band, occurrence=prediction.at, patient_reference=patient,
        patient_key=prediction.patient_key, card_url=card,
    )
    return prediction.model_dump(mode="json") | {"risk_assessment": resource}


def _served(outcome: PredictionOutcome, body: PredictBody, request: Request, database: Database,
            context: ServingContext, actor: Principal, settings: Settings) -> dict[str, Any]:
    """The response for one served prediction: shadows queued, review decided, and its RiskAssessment
    queued for the EHR's FHIR server when one is configured and the EHR's Patient is known."""
    context.shadows.submit(outcome.deferred)
    prediction = outcome.prediction
    patient = patient_reference(body.resources)
    document = _with_fhir(prediction, request, patient)
    publication = "off" if context.publisher is None else "no_ehr_patient" if patient is None else "queued"
    if publication == "queued":
        assert context.publisher is not None
        context.publications.submit([publication_work(database, context.publisher, actor, prediction.id,
                                                      document["risk_assessment"])])
    return document | {"review": _reviewed(database, actor, settings, prediction), "publication": publication}


def _request(body: PredictBody) -> PredictionRequest:
    return PredictionRequest(site=body.site, features=body.features, patient_key=body.patient_key,
                             resources=body.resources, at=body.at, request_id=request_id_var.get())


@router.post("/v1/models/{name}/predict")
def post_predict(
    name: str, body: PredictBody, request: Request, database: DatabaseDep, context: ContextDep, actor: PrincipalDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Score one patient (a feature vector, a patient key, or FHIR resources) at a site, with its reasons,
    and whether it was queued for clinician review. Routed by the site's deployments; a shadow
    challenger is scored off the response path."""
    return _served(predict(database, context, actor, name, _request(body)), body, request, database, context,
                   actor, settings)


@router.post("/v1/models/{name}/predict/batch")
def post_predict_batch(
    name: str, body: BatchBody, request: Request, database: DatabaseDep, context: ContextDep, actor: PrincipalDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Score many rows in one call; each row is routed, logged, audited and queued for review like a
    single prediction."""
    results = []
    for row in body.rows:
        results.append(_served(predict(database, context, actor, name, _request(row)), row, request, database,
                               context, actor, settings))
    return {"predictions": results}


@router.get("/v1/predictions/{prediction_id}")
def get_prediction_record(
    prediction_id: Annotated[str, Field(max_length=40)], request: Request, database: DatabaseDep, actor: PrincipalDep,
    format: Literal["json", "fhir"] = "json",  # noqa: A002 - the public query name
) -> dict[str, Any]:
    """A logged prediction (``format=fhir``: its RiskAssessment). Every read is audited."""
    prediction = get_prediction(database, actor, prediction_id)
    document = _with_fhir(prediction, request)
    return document["risk_assessment"] if format == "fhir" else document


@router.post("/v1/outcomes", status_code=status.HTTP_201_CREATED)
def post_outcome(body: OutcomeBody, database: DatabaseDep, actor: PrincipalDep) -> dict[str, Any]:
    """An observed outcome for a prediction (from the EHR or a registry); the same one again is a no-op."""
    return record_outcome(database, actor, body.prediction_id, outcome=body.outcome, observed_at=body.observed_at,
                          source=body.source)
