"""Permission checks shared by the API and the command line; every denial is audited."""

from __future__ import annotations

from typing import Any

from vitalops.audit import append
from vitalops.auth.permissions import Permission
from vitalops.auth.principal import Principal
from vitalops.db.engine import Database
from vitalops.errors import PermissionDenied


def record_denial(
    database: Database, principal_name: str, action: str, *, object_type: str, object_id: str,
    payload: dict[str, Any],
) -> None:
    """Write a denial to the audit trail in its own transaction (the denied one rolls back)."""
    with database.session() as session:
        append(session, actor=principal_name, action=action, object_type=object_type, object_id=object_id,
               payload=payload)


def authorize(
    database: Database, principal: Principal, permission: Permission, *, object_type: str, object_id: str
) -> None:
    """Return when ``principal`` holds ``permission``; otherwise audit the denial and raise PermissionDenied."""
    if principal.can(permission):
        return
    roles = sorted(role.value for role in principal.roles)
    record_denial(database, principal.name, "access.denied", object_type=object_type, object_id=object_id,
                  payload={"permission": permission.value, "roles": roles})
    raise PermissionDenied(
        f"'{principal.name}' ({', '.join(roles) or 'no role'}) may not {permission.value}",
        details={"permission": permission.value},
    )
