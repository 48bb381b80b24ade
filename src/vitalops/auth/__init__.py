"""Principals, roles, the permission matrix, users and API keys, and the one permission check.

The permission check (which writes to the audit trail, so loads the database layer) loads on
first use, so that the command line can name roles without SQLAlchemy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from vitalops.auth.permissions import MATRIX, Permission, Role, is_permitted
from vitalops.auth.principal import SYSTEM, Principal

_GUARD = ("authorize", "record_denial", "require_own_credential")

__all__ = ["MATRIX", "SYSTEM", "Permission", "Principal", "Role", "authorize", "is_permitted", "record_denial",
           "require_own_credential"]


def __getattr__(name: str) -> Any:
    if name not in _GUARD:
        raise AttributeError(f"module 'vitalops.auth' has no attribute {name!r}")
    value = getattr(import_module("vitalops.auth.guard"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from vitalops.auth.guard import authorize, record_denial, require_own_credential
