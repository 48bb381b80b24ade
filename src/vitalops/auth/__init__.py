"""Principals, roles, the permission matrix, users and API keys, and the one permission check."""

from vitalops.auth.guard import authorize, record_denial, require_own_credential
from vitalops.auth.permissions import MATRIX, Permission, Role, is_permitted
from vitalops.auth.principal import SYSTEM, Principal

__all__ = ["MATRIX", "SYSTEM", "Permission", "Principal", "Role", "authorize", "is_permitted", "record_denial",
           "require_own_credential"]
