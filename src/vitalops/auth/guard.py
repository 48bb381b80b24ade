"""Permission checks shared by the API and the command line; every denial is audited.

``authorize`` enforces the permission matrix. ``require_own_credential`` enforces the rule that
makes the two-person rule mean two people: a governance act (approve or reject a version or a
plan, a full review, a promotion beyond shadow) counts only when made with a key its person created
for themselves, which no admin has seen.
"""

from __future__ import annotations

from typing import Any

from vitalops.audit import append
from vitalops.auth.permissions import Permission
from vitalops.auth.principal import Principal
from vitalops.db.engine import Database
from vitalops.errors import PermissionDenied, PolicyViolation


def record_denial(
    database: Database, principal: str | Principal, action: str, *, object_type: str, object_id: str,
    payload: dict[str, Any],
) -> None:
    """Write a denial to the audit trail in its own transaction (the denied one rolls back)."""
    with database.session() as session:
        append(session, actor=principal, action=action, object_type=object_type, object_id=object_id,
               payload=payload)


def authorize(
    database: Database, principal: Principal, permission: Permission, *, object_type: str, object_id: str
) -> None:
    """Return when ``principal`` holds ``permission``; otherwise audit the denial and raise PermissionDenied."""
    if principal.can(permission):
        return
    roles = sorted(role.value for role in principal.roles)
    record_denial(database, principal, "access.denied", object_type=object_type, object_id=object_id,
                  payload={"permission": permission.value, "roles": roles})
    raise PermissionDenied(
        f"'{principal.name}' ({', '.join(roles) or 'no role'}) may not {permission.value}",
        details={"permission": permission.value},
    )


def require_own_credential(
    database: Database, principal: Principal, act: str, *, object_type: str, object_id: str
) -> None:
    """Return when ``principal`` is a person acting with a key of their own; otherwise audit the
    refusal and raise PolicyViolation naming what to use instead."""
    if principal.personal and principal.kind == "user":
        return
    record_denial(database, principal, "governance.credential_refused", object_type=object_type,
                  object_id=object_id, payload={"act": act, "credential": principal.credential})
    raise PolicyViolation(
        f"{act} needs the credential of the person acting: a key '{principal.name}' created for themselves "
        "(redeem an enrollment token with 'vitalops keys redeem', then send it as 'Authorization: Bearer <key>' "
        "or set VITALOPS_API_KEY); a name from VITALOPS_USER or a key issued by an admin does not count",
        details={"rule": "own_credential", "credential": principal.credential},
    )
