"""CDS Hooks services: discovery, the ``patient-view`` call, and feedback on cards.

One service per model deployed at any site; its id is the model's name. A call is scored by the
deployments of the site its EHR client is registered for (``cdshooks.clients``), from the
prefetch (or, for a key not sent, from the EHR's FHIR server with the token it gave), through the
same normalization and online kernel as every other prediction (``serving.predict`` with
``resources=``). Everything about the request is checked before anything is scored, so a refused
call never leaves a log row; it is counted instead against the model the service is named for, at
the EHR's site, version 0 (``serving.failures``), as is a failure after scoring. Scoring counts its
own failures. Authentication and permission refusals are access, not the model's failures (a JWT
refused never reaches the service: the route audits it), and a service id that names no model
belongs to none: neither is counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Permission, authorize
from vitalops.cdshooks.cards import build_card, prediction_id_of
from vitalops.cdshooks.prefetch import (
    FhirFetcher,
    Template,
    fill_template,
    merge_templates,
    resources_of,
    templates_for,
)
from vitalops.cdshooks.trust import VerifiedCall
from vitalops.core.clock import as_utc, utcnow
from vitalops.db import Database
from vitalops.db.tables.cdshooks import CardFeedbackRow
from vitalops.db.tables.governance import DeploymentEventRow
from vitalops.db.tables.registry import ModelRow, ModelVersionRow
from vitalops.db.tables.serving import PredictionRow
from vitalops.errors import BadRequest, NotFound, PermissionDenied, PreconditionFailed, Unauthenticated
from vitalops.features.definition_sets import get_definitions
from vitalops.review import ReviewPolicy, enqueue, reasons_for
from vitalops.serving import Prediction, PredictionRequest, ServingContext, predict
from vitalops.serving.failures import Attempt, record_failure
from vitalops.serving.service import write_log

HOOK = "patient-view"
_Body = TypeVar("_Body", bound=BaseModel)


def _field(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "<body>"


def json_body(raw: bytes) -> Any:
    """``raw`` decoded as JSON; BadRequest when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not JSON", details={"field": "<body>"}) from None


def _parse(model: type[_Body], body: Any, prefix: str = "") -> _Body:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = prefix + _field(error)
        raise BadRequest(f"'{name}': {error['msg']}", details={"field": name}) from None


class FhirAuthorization(BaseModel):
    model_config = ConfigDict(extra="allow")
    access_token: str = Field(min_length=1)
    token_type: str
    expires_in: int
    scope: str
    subject: str


class HookContext(BaseModel):
    model_config = ConfigDict(extra="allow")
    patientId: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9\-.]{1,64}$")  # noqa: N815 - spec name
    userId: str = Field(min_length=1, max_length=256)  # noqa: N815 - the specification's name
    encounterId: str | None = Field(default=None, max_length=64)  # noqa: N815 - the specification's name


class HookRequest(BaseModel):
    """A CDS Hooks request body (``patient-view``)."""

    model_config = ConfigDict(extra="allow")
    hook: str
    hookInstance: str = Field(min_length=1, max_length=64)  # noqa: N815 - the specification's name
    context: HookContext
    fhirServer: str | None = Field(default=None, max_length=2048)  # noqa: N815 - the specification's name
    fhirAuthorization: FhirAuthorization | None = None  # noqa: N815 - the specification's name
    prefetch: dict[str, Any] | None = None


class Coding(BaseModel):
    system: str = Field(min_length=1, max_length=256)
    code: str = Field(min_length=1, max_length=64)
    display: str | None = Field(default=None, max_length=256)


class OverrideReason(BaseModel):
    reason: Coding | None = None
    userComment: str | None = Field(default=None, max_length=4000)  # noqa: N815 - the specification's name


class AcceptedSuggestion(BaseModel):
    id: str = Field(min_length=1, max_length=64)


class FeedbackItem(BaseModel):
    card: str = Field(min_length=1, max_length=64)
    outcome: str = Field(pattern="^(accepted|overridden)$")
    acceptedSuggestions: list[AcceptedSuggestion] = Field(default_factory=list, max_length=20)  # noqa: N815
    overrideReason: OverrideReason | None = None  # noqa: N815 - the specification's name
    outcomeTimestamp: datetime  # noqa: N815 - the specification's name


class FeedbackBody(BaseModel):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=100)


@dataclass
class CallResult:
    """The response body and the shadow work to run after it."""

    body: dict[str, Any]
    deferred: list[Callable[[], None]] = field(default_factory=list)
    prediction: Prediction | None = None
    queued: bool = False


class CdsHooks:
    """The CDS services of one worker: discovery, calls and feedback over one serving context."""

    def __init__(self, database: Database, serving: ServingContext, *, policy: ReviewPolicy | None = None,
                 fetcher: FhirFetcher | None = None) -> None:
        self.database = database
        self.serving = serving
        self.policy = policy or ReviewPolicy()
        self.fetcher = fetcher or FhirFetcher()
        self._templates: dict[str, list[Template]] = {}  # by definitions version
        self._deployed_cache: dict[str | None, tuple[tuple[int, int | None], dict[str, list[str | None]]]] = {}
        self._lock = threading.Lock()

    def _spec_templates(self, session: Session, definitions_version: str | None) -> list[Template]:
        if definitions_version is None:
            return []
        cached = self._templates.get(definitions_version)
        if cached is None:
            try:
                spec = get_definitions(session, definitions_version)
            except NotFound:
                return []
            cached = templates_for(spec, self.serving.terminology)
            with self._lock:
                self._templates[definitions_version] = cached
        return cached

    def _deployed(self, session: Session, site: str | None = None) -> dict[str, list[str | None]]:
        """Model name -> definitions versions of the versions deployed now (at ``site``, or anywhere).

        Kept per site until a deployment event is written (events are only ever appended, so the
        count and newest id of the events say whether anything changed), so a call costs one small
        query rather than a read of the whole deployment history."""
        count, newest = session.execute(select(func.count(DeploymentEventRow.id),
                                               func.max(DeploymentEventRow.id))).one()
        marker = (int(count or 0), newest)
        cached = self._deployed_cache.get(site)
        if cached is not None and cached[0] == marker:
            return cached[1]
        deployed = self._read_deployed(session, site)
        with self._lock:
            self._deployed_cache[site] = (marker, deployed)
        return deployed

    def _read_deployed(self, session: Session, site: str | None) -> dict[str, list[str | None]]:
        query = select(DeploymentEventRow).order_by(DeploymentEventRow.id)
        if site is not None:
            query = query.where(DeploymentEventRow.site == site)
        latest: dict[tuple[int, str, str], int | None] = {}
        for event in session.scalars(query):
            latest[(event.model_id, event.site, event.slot)] = event.version_id
        version_ids = {v for v in latest.values() if v is not None}
        if not version_ids:
            return {}
        rows = session.execute(select(ModelVersionRow.id, ModelVersionRow.definitions_version, ModelRow.name)
                               .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
                               .where(ModelVersionRow.id.in_(version_ids)))
        deployed: dict[str, list[str | None]] = {}
        for _, definitions, name in rows:
            deployed.setdefault(name, []).append(definitions)
        return deployed

    def discovery(self, now: datetime | None = None) -> dict[str, Any]:
        """``{"services": [...]}``: a ``patient-view`` service per model deployed anywhere (none: an empty list)."""
        now = now or utcnow()
        services = []
        with self.database.read_session() as session:
            deployed = self._deployed(session)
            models = {row.name: row for row in session.scalars(select(ModelRow).where(ModelRow.name.in_(deployed)))}
            for name in sorted(deployed):
                templates = merge_templates(self._spec_templates(session, d) for d in deployed[name])
                model = models[name]
                services.append({
                    "hook": HOOK,
                    "id": name,
                    "title": f"{name}: risk of {model.output_meaning}"[:120],
                    "description": f"{model.intended_use}. Risk of {model.output_meaning} for "
                                   f"{model.target_population}, with its reasons.",
                    "prefetch": {t.key: t.render(now) for t in templates},
                    "usageRequirements": "The EHR is registered with 'vitalops ehr add' for its site.",
                })
        return {"services": services}

    def _templates_at(self, session: Session, service_id: str, site: str) -> list[Template]:
        deployed = self._deployed(session, site)
        if service_id not in deployed:
            if service_id not in self._deployed(session):
                raise NotFound(f"no CDS service '{service_id}'", details={"field": "id"})
            raise NotFound(f"service '{service_id}' is not deployed at this EHR's site", details={"field": "id"})
        return merge_templates(self._spec_templates(session, d) for d in deployed[service_id])

    def _resources(self, request: HookRequest, templates: list[Template], now: datetime) -> list[dict[str, Any]]:
        prefetch = request.prefetch or {}
        patient_id = request.context.patientId
        context = request.context.model_dump()
        resources: list[dict[str, Any]] = []
        for template in templates:
            if template.key in prefetch:
                value = prefetch[template.key]
            elif request.fhirServer and request.fhirAuthorization is not None:
                value = self.fetcher.fetch(request.fhirServer, request.fhirAuthorization.access_token,
                                           fill_template(template.render(now), context), template.key)
            else:
                raise PreconditionFailed(
                    f"prefetch '{template.key}' is needed and was not sent, and no fhirServer with "
                    "fhirAuthorization was given to fetch it", details={"field": f"prefetch.{template.key}"})
            found = resources_of(template.key, value, patient_id)
            if template.key == "patient" and not any(r.get("resourceType") == "Patient" for r in found):
                raise PreconditionFailed("the Patient of context.patientId is needed to score",
                                         details={"field": "prefetch.patient"})
            resources.extend(found)
        return resources

    def call(self, verified: VerifiedCall, service_id: str, raw: bytes, *,
             model_card_url: Callable[[str, int], str], now: datetime | None = None) -> CallResult:
        """Answer one hook call (its body as sent) with ``{"cards": [...]}``: BadRequest for a body
        that is not a ``patient-view`` request or resources of another patient, NotFound for an
        unknown service, PreconditionFailed when a prefetch key is missing and cannot be fetched.
        A failure is counted against the service's model before it is raised (module docstring)."""
        now = now or utcnow()
        attempt = Attempt(site=verified.client.site, at=now, model=service_id)
        with self._counted(attempt):
            request, resources = self._checked(verified, service_id, json_body(raw), now)
            patient_key = self.serving.pseudonymizer.patient_key(request.context.patientId)
        outcome = predict(self.database, self.serving, verified.principal, service_id,
                          PredictionRequest(site=attempt.site, resources=resources, patient_key=patient_key,
                                            at=now, request_id=request.hookInstance[:64]))
        with self._counted(attempt):
            return self._answer(verified, request, outcome.prediction, outcome.deferred, model_card_url)

    @contextmanager
    def _counted(self, attempt: Attempt) -> Iterator[None]:
        try:
            yield
        except (Unauthenticated, PermissionDenied):
            raise
        except Exception as error:
            record_failure(lambda job: write_log(self.database, self.serving, job), attempt, error)
            raise

    def _checked(self, verified: VerifiedCall, service_id: str, body: Any, now: datetime
                 ) -> tuple[HookRequest, list[dict[str, Any]]]:
        request = _parse(HookRequest, body)
        if request.hook != HOOK:
            raise BadRequest(f"hook '{request.hook[:40]}' is not served; these services answer '{HOOK}'",
                             details={"field": "hook"})
        if request.fhirAuthorization is not None and not request.fhirServer:
            raise BadRequest("fhirAuthorization needs fhirServer", details={"field": "fhirServer"})
        authorize(self.database, verified.principal, Permission.CDS_HOOKS_CALL, object_type="cds_service",
                  object_id=service_id)
        if request.fhirServer and not verified.client.allows_fhir_server(request.fhirServer):
            # Checked before anything is fetched or scored; the URL is not echoed back.
            raise BadRequest("fhirServer is not one of the FHIR servers registered for this EHR client "
                             "('vitalops ehr add --fhir-server')",
                             details={"field": "fhirServer", "reason": "fhir_server_not_allowed"})
        with self.database.read_session() as session:
            templates = self._templates_at(session, service_id, verified.client.site)
        return request, self._resources(request, templates, now)

    def _answer(self, verified: VerifiedCall, request: HookRequest, prediction: Prediction,
                deferred: list[Callable[[], None]], model_card_url: Callable[[str, int], str]) -> CallResult:
        reasons = reasons_for(prediction, self.policy)
        if reasons:
            with self.database.session() as session:
                enqueue(session, verified.principal, prediction, reasons)
        cards = []
        hold = bool(reasons) and self.policy.mode == "instead"
        if prediction.served and prediction.mode != "shadow" and not hold:
            note = "Queued for clinician review: " + "; ".join(r.describe() for r in reasons) if reasons else None
            cards.append(build_card(prediction, patient_id=request.context.patientId,
                                    model_card_url=model_card_url(prediction.model, prediction.version),
                                    review_note=note))
        return CallResult({"cards": cards}, deferred, prediction, bool(reasons))

    def feedback(self, verified: VerifiedCall, service_id: str, body: Any) -> dict[str, int]:
        """Store each feedback item once, linked to its card's prediction (the same item again is a
        no-op). BadRequest for a malformed body, NotFound for a card this EHR's site was never shown."""
        parsed = _parse(FeedbackBody, body)
        authorize(self.database, verified.principal, Permission.FEEDBACK_WRITE, object_type="cds_service",
                  object_id=service_id)
        stored = duplicates = 0
        with self.database.session() as session:
            for position, item in enumerate(parsed.feedback):
                where = f"feedback[{position}]"
                prediction_id = prediction_id_of(item.card)
                row = None if prediction_id is None else session.get(PredictionRow, prediction_id)
                model = None if row is None else session.get(ModelRow, row.model_id)
                if row is None or model is None or model.name != service_id or not row.served \
                        or row.site != verified.client.site:
                    raise NotFound(f"{where}.card is not a card of service '{service_id}' shown at this site",
                                   details={"field": f"{where}.card"})
                reason = item.overrideReason
                if item.outcome == "accepted" and reason is not None:
                    raise BadRequest(f"{where}: an accepted card has no overrideReason",
                                     details={"field": f"{where}.overrideReason"})
                coding = None if reason is None else reason.reason
                values = {
                    "card_uuid": item.card.lower(), "prediction_id": row.id, "service_id": service_id,
                    "issuer": verified.client.issuer, "outcome": item.outcome,
                    "accepted_suggestions_json": orjson.dumps([s.id for s in item.acceptedSuggestions]).decode(),
                    "override_system": None if coding is None else coding.system,
                    "override_code": None if coding is None else coding.code,
                    "override_display": None if coding is None else coding.display,
                    "user_comment": None if reason is None else reason.userComment,
                    "outcome_at": as_utc(item.outcomeTimestamp), "recorded_at": utcnow(),
                }
                if _insert_once(session, values):
                    stored += 1
                    append(session, actor=verified.principal, action="cds.feedback", object_type="prediction",
                           object_id=row.id, payload={"service": service_id, "outcome": item.outcome,
                                                      "override_code": values["override_code"]})
                else:
                    duplicates += 1
        return {"stored": stored, "duplicates": duplicates}


def _insert_once(session: Session, values: dict[str, Any]) -> bool:
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(CardFeedbackRow).values(**values).on_conflict_do_nothing()
    # RETURNING gives a row only when one was inserted (rowcount is not reliable for ORM inserts)
    return session.execute(statement.returning(CardFeedbackRow.id)).first() is not None
