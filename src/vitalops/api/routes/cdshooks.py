"""CDS Hooks 2.0.1: ``GET /cds-services``, ``POST /cds-services/{id}``, ``POST /cds-services/{id}/feedback``.

Thin: every call, discovery included, carries the EHR's signed JWT (``cdshooks.trust``), whose ``aud``
must be the exact URL called (``VITALOPS_PUBLIC_URL`` plus the path, behind a proxy; else the URL this
server saw). Refusals are 401 problem+json naming the check, audited as counts per check, route,
source and minute (``auth.denials``), never as a model's failures. Bodies are read as JSON
(``cdshooks.service.json_body``) so that a body that is not a CDS Hooks request is a 400 naming the
field, as the specification expects, rather than a 422; a service call's body is decoded inside the
call, where its refusal is counted against the service's model.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from vitalops.api.deps import DatabaseDep, SettingsDep
from vitalops.api.routes.predictions import serving_context
from vitalops.auth.denials import DenialWindows
from vitalops.cdshooks import CdsHooks, VerifiedCall, Verifier, record_jti
from vitalops.cdshooks.service import json_body
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.errors import Unauthenticated
from vitalops.review import ReviewPolicy
from vitalops.serving import ServingContext

router = APIRouter(tags=["cds-hooks"])
_lock = threading.Lock()
#: Expired JWT ids are deleted at most this often (each worker).
PURGE_EVERY_S = 60.0


class CdsRuntime:
    """What the CDS routes of one app share: the services, the verifier, and the JWT-id writer."""

    def __init__(self, database: Database, serving: ServingContext, settings: Settings,
                 verifier: Verifier | None = None) -> None:
        self.database = database
        self.serving = serving
        self.settings = settings
        self.hooks = CdsHooks(database, serving, policy=ReviewPolicy(margin=settings.review_margin,
                                                                     mode=settings.review_mode))
        self.verifier = verifier or Verifier(database)
        self._purged_at = float("-inf")

    def record(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Remember a JWT id (committed before the call proceeds, batched with concurrent log writes)."""
        outcome: list[bool] = []
        now = time.monotonic()
        purge = now - self._purged_at > PURGE_EVERY_S
        if purge:
            self._purged_at = now

        def work(session: Any) -> None:
            outcome.append(record_jti(session, issuer, jti, expires_at, purge=purge))

        if self.serving.writer is not None:
            self.serving.writer.write(work)
        else:
            with self.database.session() as session:
                work(session)
        return outcome[-1]


def cds_runtime(request: Request, settings: SettingsDep, database: DatabaseDep,
                serving: Annotated[ServingContext, Depends(serving_context)]) -> CdsRuntime:
    runtime: CdsRuntime | None = getattr(request.app.state, "cdshooks", None)
    if runtime is None:
        with _lock:
            runtime = getattr(request.app.state, "cdshooks", None)
            if runtime is None:
                runtime = CdsRuntime(database, serving, settings)
                request.app.state.cdshooks = runtime
    return runtime


RuntimeDep = Annotated[CdsRuntime, Depends(cds_runtime)]


def called_url(request: Request, settings: Settings) -> str:
    """The exact URL the EHR called, as its JWT's ``aud`` must name it."""
    if settings.public_url:
        return settings.public_url.rstrip("/") + request.url.path
    return str(request.url.replace(query="", fragment=""))


def verified_call(request: Request, runtime: RuntimeDep, settings: SettingsDep) -> VerifiedCall:
    """The EHR behind the request's ``Authorization: Bearer <JWT>``; 401 naming the failed check."""
    route = getattr(request.scope.get("route"), "path", "unmatched")
    source = request.client.host if request.client is not None else "unknown"
    denials: DenialWindows = request.app.state.denials
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("send 'Authorization: Bearer <JWT>' signed by a trusted EHR",
                                  details={"reason": "jwt.missing", "check": "missing"})
        return runtime.verifier.verify(token.strip(), called_url(request, settings), runtime.record)
    except Unauthenticated as exc:
        denials.record(runtime.database, reason=str(exc.details.get("reason", "jwt.malformed")), route=route,
                       source=source)
        raise


CallerDep = Annotated[VerifiedCall, Depends(verified_call)]


async def _json_body(request: Request) -> Any:
    return json_body(await request.body())


def _card_url(request: Request, settings: Settings) -> Any:
    def url(name: str, number: int) -> str:
        if settings.public_url:
            return f"{settings.public_url.rstrip('/')}/v1/models/{name}/versions/{number}/card"
        return str(request.url_for("get_card", name=name, number=str(number)))

    return url


@router.get("/cds-services")
def get_discovery(runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """CDS Hooks discovery: one ``patient-view`` service per deployed model (an empty list when none)."""
    return runtime.hooks.discovery()


@router.post("/cds-services/{service_id}")
async def post_service(service_id: str, request: Request, runtime: RuntimeDep, caller: CallerDep,
                       settings: SettingsDep) -> dict[str, Any]:
    """Call a service: cards for the patient in ``context`` (a shadow is scored by the worker's shadow
    thread, off the response path, as for REST predictions)."""
    raw = await request.body()
    result = await run_in_threadpool(runtime.hooks.call, caller, service_id, raw,
                                     model_card_url=_card_url(request, settings))
    runtime.serving.shadows.submit(result.deferred)
    return result.body


@router.post("/cds-services/{service_id}/feedback")
async def post_feedback(service_id: str, request: Request, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """Feedback on cards (accepted or overridden with a reason); the same feedback again is stored once."""
    body = await _json_body(request)
    return await run_in_threadpool(runtime.hooks.feedback, caller, service_id, body)
