"""FastAPI dependencies: the database, the settings, and the authenticated principal.

``require(permission)`` is the one dependency that enforces the permission matrix on a route:
401 without a valid key (audited as counts per window), 403 without the permission (audited each).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vitalops.auth import Permission, Principal, authorize
from vitalops.auth.denials import DenialWindows
from vitalops.auth.users import authenticate_key
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.errors import Unauthenticated


# Dependencies that only read the app's state are coroutines: FastAPI runs a plain function in its
# thread pool, and a hop there and back per dependency costs more than the work under load.
async def get_database(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


DatabaseDep = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
#: Declares the scheme in the OpenAPI (the explorer's Authorize button); the header is checked below.
bearer_scheme = HTTPBearer(scheme_name="bearer", description="an API key, 'vok_...'", auto_error=False)
BearerDeclared = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def current_principal(request: Request, database: DatabaseDep, _declared: BearerDeclared) -> Principal:
    """The principal behind the request's ``Authorization: Bearer <key>``; 401 otherwise.

    Failures are audited as counts per reason, route, source and minute (``auth.denials``), so
    that unauthenticated traffic cannot flood the trail or hold the write lock.
    """
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    route = getattr(request.scope.get("route"), "path", "unmatched")
    source = request.client.host if request.client is not None else "unknown"
    denials: DenialWindows = request.app.state.denials
    if scheme.lower() != "bearer" or not credentials:
        denials.record(database, reason="missing_credentials", route=route, source=source)
        raise Unauthenticated("send 'Authorization: Bearer <API key>'")
    try:
        with database.read_session() as session:
            return authenticate_key(session, credentials)
    except Unauthenticated as exc:
        denials.record(database, reason=str(exc.details.get("reason", "malformed")), route=route, source=source)
        raise


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency that returns the principal when it holds ``permission`` (403, audited, otherwise)."""

    def dependency(request: Request, principal: PrincipalDep, database: DatabaseDep) -> Principal:
        route = getattr(request.scope.get("route"), "path", "unmatched")
        authorize(database, principal, permission, object_type="route", object_id=route)
        return principal

    return dependency
