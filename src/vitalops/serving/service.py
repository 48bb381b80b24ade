"""Predictions: route, build the vector, score with reasons, log, audit; the same service for REST,
the command line and (later) CDS Hooks.

A request names a model and a site and gives one of: a feature vector (by name), a patient key
(features from the patient's facts), or one patient's FHIR resources (normalized exactly as ingest
does). The site's deployments decide who scores (``serving.routing``); the served prediction is
logged and audited in one transaction before it is returned; a shadow's scoring is handed back as
work to run after the response, and is logged but never returned.

Every logged row holds the exact vector scored, the version and its artifact hash, the deployment
and mode, so ``recompute`` gives the same score and explanation from the log alone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field
from sqlalchemy import select

from vitalops.artifacts import open_store
from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import as_utc, utcnow
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.db.tables.registry import ModelRow, ModelVersionRow
from vitalops.db.tables.serving import OutcomeRow, PredictionRow
from vitalops.errors import Conflict, InvalidInput, NotFound
from vitalops.features.facts_view import ENGINE_COLUMNS
from vitalops.features.online import vector_from_facts
from vitalops.features.online_store import OnlineStore, open_online_store
from vitalops.features.partitions import open_facts
from vitalops.fhir.publish import RiskAssessmentPublisher
from vitalops.ingest.fact_rows import FactColumns
from vitalops.ingest.normalize import resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.registry.input_ranges import InputRanges
from vitalops.registry.schemas import Signature
from vitalops.serving.explain import Explanation
from vitalops.serving.failures import Attempt, record_failure
from vitalops.serving.log_writer import LogWriter
from vitalops.serving.publishing import publisher_from_settings
from vitalops.serving.routing import Assignment, RoutingCache, route
from vitalops.serving.runtime import LoadedVersion, Runtime
from vitalops.serving.shadows import ShadowQueue
from vitalops.terminology import Terminology, load_terminology

INPUT_KINDS = ("features", "patient", "fhir")


class FactSource(Protocol):
    """Where a patient's facts come from when a prediction names a patient key."""

    def facts_for(self, patient_key: str) -> pa.Table: ...


class LakeFacts:
    """A patient's facts read from the lake's facts table (the online store answers faster)."""

    def __init__(self, lake_root: str) -> None:
        self.lake_root = lake_root

    def facts_for(self, patient_key: str) -> pa.Table:
        dataset, _ = open_facts(self.lake_root)
        return dataset.to_table(columns=list(ENGINE_COLUMNS), filter=pc.field("patient_key") == patient_key)


class OnlineFacts:
    """A patient's facts from the online store (``vitalops.features.online_store``): the recent facts
    ingest keeps there, read in about a millisecond."""

    def __init__(self, store: OnlineStore) -> None:
        self.store = store

    def facts_for(self, patient_key: str) -> pa.Table:
        return self.store.facts_for(patient_key)


def facts_source(settings: Settings) -> FactSource:
    """Where serving reads facts by patient key: the installation's online store once ingest or
    ``vitalops online rebuild`` has written it; the lake's facts table before that (an
    installation whose lake predates the store, until it is rebuilt)."""
    store = open_online_store(settings.online_store)
    if store.populated():
        return OnlineFacts(store)
    store.close()
    return LakeFacts(settings.lake_root)


@dataclass
class ServingContext:
    """What predictions need besides the database: loaded versions, facts, pseudonyms, terminology."""

    runtime: Runtime
    facts: FactSource
    pseudonymizer: Pseudonymizer
    terminology: Terminology
    routing: RoutingCache = field(default_factory=RoutingCache)
    #: Group commit of log rows across concurrent requests (a server's); None writes each on its own.
    writer: LogWriter | None = None
    #: Where a server scores shadows, off the response path.
    shadows: ShadowQueue = field(default_factory=ShadowQueue)
    #: Where RiskAssessments go to the EHR's FHIR server (None: they are not published), and the
    #: queue that posts them off the response path (``serving.publishing``).
    publisher: RiskAssessmentPublisher | None = None
    publications: ShadowQueue = field(default_factory=ShadowQueue)


class PredictionRequest(BaseModel):
    """One request. Exactly one of ``features``, ``patient_key`` (alone) or ``resources``; with
    ``features``, a ``patient_key`` may be given too, for routing and the log."""

    site: str
    features: dict[str, float | None] | None = None
    patient_key: str | None = None
    resources: list[dict[str, Any]] | None = None
    at: datetime | None = None
    request_id: str | None = None

    def kind(self) -> str:
        given = [self.features is not None, self.resources is not None]
        if sum(given) > 1:
            raise InvalidInput("give one of 'features', 'patient_key' or 'resources'", details={"field": "features"})
        if self.features is not None:
            return "features"
        if self.resources is not None:
            return "fhir"
        if self.patient_key is not None:
            return "patient"
        raise InvalidInput("give one of 'features', 'patient_key' or 'resources'", details={"field": "features"})


class Prediction(BaseModel):
    """A logged prediction as callers see it."""

    id: str
    model: str
    version: int
    artifact_sha256: str
    site: str
    deployment_event_id: int | None
    mode: str
    served: bool
    patient_key: str | None
    score: float
    threshold: float
    band: str
    decision: bool
    outcome: str
    explanation: Explanation
    features: dict[str, float | None]
    at: datetime
    latency_ms: float
    request_id: str | None = None
    input_kind: str = "features"
    #: Inputs outside the range the version was trained on, within its plan's tolerance (beyond it, refused).
    out_of_range: list[str] = Field(default_factory=list)


@dataclass
class PredictionOutcome:
    """The served prediction, and the shadow work to run once the response is on its way."""

    prediction: Prediction
    deferred: list[Callable[[], None]]

    def run_deferred(self) -> None:
        for work in self.deferred:
            work()


def _vector_from_features(version: LoadedVersion, features: dict[str, float | None]) -> np.ndarray:
    names = version.feature_names
    unknown = sorted(set(features) - set(names))
    if unknown:
        raise InvalidInput(f"features {', '.join(unknown[:5])} are not inputs of {version.model} v{version.number}",
                           details={"field": f"features.{unknown[0]}"})
    missing = [name for name in names if name not in features]
    if missing:
        raise InvalidInput(f"{len(missing)} inputs of {version.model} v{version.number} are missing, first "
                           f"'{missing[0]}' (send null for a value that is not known)",
                           details={"field": f"features.{missing[0]}"})
    values = [np.nan if features[name] is None else float(features[name]) for name in names]  # type: ignore[arg-type]
    return np.asarray(values, dtype=np.float64)


def _needs_spec(version: LoadedVersion) -> Any:
    if version.spec is None:
        raise Conflict(f"{version.model} v{version.number} was trained on definitions that are not registered "
                       "here, so it scores feature vectors only")
    return version.spec


class _Inputs:
    """The request's data, turned into each version's vector on demand (versions may differ in features)."""

    def __init__(self, request: PredictionRequest, context: ServingContext, at: datetime) -> None:
        self.request = request
        self.kind = request.kind()
        self.at = at
        self.patient_key = request.patient_key
        self._facts: pa.Table | FactColumns | None = None
        if self.kind == "patient":
            assert request.patient_key is not None
            self._facts = stored = context.facts.facts_for(request.patient_key)
            if stored.num_rows == 0:
                raise NotFound("no facts are known for that patient key", details={"field": "patient_key"})
        elif self.kind == "fhir":
            assert request.resources is not None
            result = resources_to_facts(request.resources, site=request.site, pseudonymizer=context.pseudonymizer,
                                        terminology=context.terminology, known_at_default=at)
            patients = result.patient_keys()
            if len(patients) != 1:
                raise InvalidInput(f"the resources describe {len(patients)} patients; exactly one is needed",
                                   details={"field": "resources"})
            if request.patient_key is not None and patients[0] != request.patient_key:
                raise InvalidInput("the resources are of another patient than the one named",
                                   details={"field": "resources"})
            self.patient_key, self._facts = str(patients[0]), result.facts_for_kernel

    def vector(self, version: LoadedVersion) -> np.ndarray:
        if self.kind == "features":
            assert self.request.features is not None
            return _vector_from_features(version, self.request.features)
        assert self._facts is not None and self.patient_key is not None
        values = vector_from_facts(self._facts, _needs_spec(version), self.patient_key, at=self.at)
        return _vector_from_features(version, values)


def predict(
    database: Database, context: ServingContext, actor: Principal, name: str, request: PredictionRequest
) -> PredictionOutcome:
    """Score ``request`` with the version its site's deployments route it to; log and audit it.

    Raises PermissionDenied without ``predict``, InvalidInput for an unregistered site or a malformed
    request (naming the field), NotFound for an unknown patient key, Conflict when no champion is
    deployed at the site, ServiceUnavailable when the artifact fails verification. A failure once the
    model is known is counted (``serving.failures``) before it is raised.
    """
    started = time.perf_counter()
    # An EHR scores through CDS Hooks (its JWT verified by ``cdshooks``), under its own permission.
    permission = Permission.CDS_HOOKS_CALL if actor.kind == "ehr" else Permission.PREDICT
    authorize(database, actor, permission, object_type="model", object_id=name)
    at = as_utc(request.at) if request.at is not None else utcnow()
    attempt = Attempt(site=request.site, at=at)
    try:
        return _predict(database, context, actor, name, request, at, started, attempt)
    except Exception as error:
        record_failure(lambda job: write_log(database, context, job), attempt, error)
        raise


def _predict(database: Database, context: ServingContext, actor: Principal, name: str, request: PredictionRequest,
             at: datetime, started: float, attempt: Attempt) -> PredictionOutcome:
    with database.read_session() as session:  # routing and loading read only: no write lock
        context.routing.require_site(session, request.site)
        deployments = context.routing.deployments(session, name, request.site)
        attempt.model_id = deployments.model_id
        tolerance = context.routing.range_tolerance(session, name)
        inputs = _Inputs(request, context, at)
        assignments = route(deployments, inputs.patient_key, name=name, site=request.site)
        versions = {}
        for assignment in assignments:  # a version whose artifact cannot load is the one that failed
            attempt.version = assignment.version
            versions[assignment.version_id] = context.runtime.version(session, assignment.version_id)
    served = next(a for a in assignments if a.served)
    attempt.version = served.version
    version = versions[served.version_id]
    row = inputs.vector(version)
    out_of_range = _check_ranges(version, row, tolerance)
    score = version.score_row(row)
    prediction = Prediction(
        id=f"pred_{uuid.uuid4().hex}", model=name, version=version.number, artifact_sha256=version.artifact_sha256,
        site=request.site, deployment_event_id=served.deployment_event_id, mode=served.mode, served=True,
        patient_key=inputs.patient_key, score=score.score, threshold=version.threshold, band=score.band,
        decision=score.decision, outcome=version.outcome, explanation=score.explanation,
        features=_named(version, row), at=at,
        latency_ms=(time.perf_counter() - started) * 1000, request_id=request.request_id, input_kind=inputs.kind,
        out_of_range=out_of_range,
    )
    write_log(database, context, lambda session: _log(session, actor, deployments.model_id, served.version_id,
                                                      version, prediction))
    deferred = [
        _shadow_work(database, context, actor, name, deployments.model_id, assignment, versions[assignment.version_id],
                     inputs, request, at, tolerance)
        for assignment in assignments
        if not assignment.served
    ]
    return PredictionOutcome(prediction, deferred)


def _check_ranges(version: LoadedVersion, row: np.ndarray, tolerance: float) -> list[str]:
    """Inputs outside ``version``'s training range; InvalidInput for one beyond the plan's tolerance,
    or for a missing value when the version's model cannot score one."""
    missing = np.flatnonzero(np.isnan(row))
    if missing.size and not version.predictor.accepts_missing:
        name = version.feature_names[int(missing[0])]
        raise InvalidInput(f"'{name}' is missing and {version.model} v{version.number} cannot score a missing value "
                           f"({missing.size} missing)", details={"field": f"features.{name}", "reason": "missing"})
    if version.ranges is None:
        return []
    return version.ranges.check(row, tolerance, what=f"{version.model} v{version.number}")


def _named(version: LoadedVersion, row: np.ndarray) -> dict[str, float | None]:
    return {name: (None if np.isnan(value) else float(value)) for name, value in zip(version.feature_names, row,
                                                                                     strict=True)}


def _shadow_work(
    database: Database, context: ServingContext, actor: Principal, name: str, model_id: int, assignment: Assignment,
    version: LoadedVersion, inputs: _Inputs, request: PredictionRequest, at: datetime, tolerance: float,
) -> Callable[[], None]:
    def work() -> None:
        attempt = Attempt(site=request.site, at=at, served=False, model_id=model_id, version=version.number)
        try:
            score()
        except Exception as error:
            record_failure(lambda job: write_log(database, context, job), attempt, error)
            raise

    def score() -> None:
        started = time.perf_counter()
        row = inputs.vector(version)
        out_of_range = _check_ranges(version, row, tolerance)
        score = version.score_row(row)
        shadow = Prediction(
            id=f"pred_{uuid.uuid4().hex}", model=name, version=version.number,
            artifact_sha256=version.artifact_sha256, site=request.site,
            deployment_event_id=assignment.deployment_event_id, mode=assignment.mode, served=False,
            patient_key=inputs.patient_key, score=score.score, threshold=version.threshold, band=score.band,
            decision=score.decision, outcome=version.outcome, explanation=score.explanation,
            features=_named(version, row), at=at,
            latency_ms=(time.perf_counter() - started) * 1000, request_id=request.request_id, input_kind=inputs.kind,
            out_of_range=out_of_range,
        )
        write_log(database, context,
                  lambda session: _log(session, actor, model_id, assignment.version_id, version, shadow))

    return work


def write_log(database: Database, context: ServingContext, work: Callable[[Any], None]) -> None:
    """Commit ``work`` (the log row and its audit event, or a failure's counter) before returning:
    through the context's group writer when it has one, else in a transaction of its own."""
    if context.writer is not None:
        context.writer.write(work)
        return
    with database.session() as session:
        work(session)


def _log(session: Any, actor: Principal, model_id: int, version_id: int, version: LoadedVersion,
         prediction: Prediction) -> None:
    session.add(
        PredictionRow(
            id=prediction.id, at=prediction.at, model_id=model_id, version_id=version_id,
            artifact_sha256=prediction.artifact_sha256, site=prediction.site, patient_key=prediction.patient_key,
            deployment_event_id=prediction.deployment_event_id, mode=prediction.mode, served=prediction.served,
            request_id=prediction.request_id, input_kind=prediction.input_kind,
            features_json=orjson.dumps([prediction.features[n] for n in version.feature_names]).decode(),
            definitions_version=None if version.spec is None else version.spec.version,
            score=prediction.score, threshold=prediction.threshold, band=prediction.band,
            decision=prediction.decision, explanation_method=prediction.explanation.method,
            explanation_json=prediction.explanation.model_dump_json(), latency_ms=prediction.latency_ms,
            actor=actor.name,
        )
    )
    append(session, actor=actor, action="prediction.created", object_type="prediction", object_id=prediction.id,
           payload={"model": prediction.model, "version": prediction.version, "site": prediction.site,
                    "mode": prediction.mode, "served": prediction.served, "patient_key": prediction.patient_key,
                    "input": prediction.input_kind})


def _to_prediction(row: PredictionRow, model: ModelRow, version: ModelVersionRow,
                   feature_names: Sequence[str]) -> Prediction:
    values = orjson.loads(row.features_json)
    ranges = InputRanges.from_lineage(orjson.loads(version.lineage_json), feature_names)
    vector = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return Prediction(
        id=row.id, model=model.name, version=version.number, artifact_sha256=row.artifact_sha256, site=row.site,
        deployment_event_id=row.deployment_event_id, mode=row.mode, served=row.served, patient_key=row.patient_key,
        score=row.score, threshold=row.threshold, band=row.band, decision=row.decision, outcome=model.output_meaning,
        explanation=Explanation.model_validate_json(row.explanation_json),
        features=dict(zip(feature_names, values, strict=True)), at=row.at, latency_ms=row.latency_ms,
        request_id=row.request_id, input_kind=row.input_kind,
        out_of_range=[] if ranges is None else ranges.outside(vector),
    )


def _read(session: Any, prediction_id: str) -> tuple[PredictionRow, ModelRow, ModelVersionRow, list[str]]:
    row = session.get(PredictionRow, prediction_id)
    if row is None:
        raise NotFound(f"no prediction '{prediction_id}'")
    version = session.get_one(ModelVersionRow, row.version_id)
    model = session.get_one(ModelRow, row.model_id)
    names = Signature.model_validate_json(version.signature_json).feature_names
    return row, model, version, names


def get_prediction(database: Database, actor: Principal, prediction_id: str) -> Prediction:
    """A logged prediction (audited as an access to the patient's data). Needs ``predict``."""
    authorize(database, actor, Permission.PREDICT, object_type="prediction", object_id=prediction_id)
    with database.session() as session:
        row, model, version, names = _read(session, prediction_id)
        append(session, actor=actor, action="prediction.read", object_type="prediction", object_id=prediction_id,
               payload={"patient_key": row.patient_key})
        return _to_prediction(row, model, version, names)


def recompute(database: Database, runtime: Runtime, prediction_id: str) -> tuple[float, Explanation]:
    """The score and explanation of a logged prediction, recomputed from the log row and its artifact alone."""
    with database.read_session() as session:
        row, _, _, names = _read(session, prediction_id)
        version = runtime.version(session, row.version_id)
    values = orjson.loads(row.features_json)
    vector = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    if tuple(names) != version.feature_names:
        raise Conflict(f"prediction '{prediction_id}' was logged with other inputs than its version's")
    score = version.score_row(vector)
    return score.score, score.explanation


def record_outcome(
    database: Database, actor: Principal, prediction_id: str, *, outcome: int, observed_at: datetime, source: str
) -> dict[str, Any]:
    """Store an observed outcome (0 or 1) of a prediction from ``source``. Idempotent: the same outcome
    again is a no-op; a different one from the same source is a Conflict. Needs ``feedback:write``."""
    authorize(database, actor, Permission.FEEDBACK_WRITE, object_type="prediction", object_id=prediction_id)
    if outcome not in (0, 1):
        raise InvalidInput("an outcome is 0 or 1", details={"field": "outcome"})
    with database.session() as session:
        if session.get(PredictionRow, prediction_id) is None:
            raise NotFound(f"no prediction '{prediction_id}'", details={"field": "prediction_id"})
        existing = session.scalar(
            select(OutcomeRow).where(OutcomeRow.prediction_id == prediction_id, OutcomeRow.source == source)
        )
        if existing is not None:
            if existing.outcome != outcome:
                raise Conflict(f"source '{source}' already recorded outcome {existing.outcome} for this prediction")
            return {"prediction_id": prediction_id, "source": source, "outcome": outcome, "recorded": False}
        session.add(OutcomeRow(prediction_id=prediction_id, source=source, outcome=outcome,
                               observed_at=as_utc(observed_at), recorded_by=actor.name, recorded_at=utcnow()))
        append(session, actor=actor, action="outcome.recorded", object_type="prediction", object_id=prediction_id,
               payload={"source": source, "outcome": outcome})
    return {"prediction_id": prediction_id, "source": source, "outcome": outcome, "recorded": True}


def default_context(settings: Settings, *, writer: LogWriter | None = None) -> ServingContext:
    """The serving context of an installation: its artifact store, lake, pseudonym key and terminology
    (a server passes a ``writer`` so concurrent requests share their log commits)."""
    terminology = load_terminology(settings.local_codes_file)
    return ServingContext(
        runtime=Runtime(open_store(settings.artifacts_root), terminology),
        facts=facts_source(settings),
        pseudonymizer=Pseudonymizer(settings.pseudonym_key.get_secret_value().encode()),
        terminology=terminology,
        writer=writer,
        publisher=publisher_from_settings(settings),
    )
