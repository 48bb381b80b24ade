"""Who is acting: a user (by API key, dashboard sign-in or the command line), an EHR, or the
platform itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from vitalops.auth.permissions import Permission, Role, is_permitted


@dataclass(frozen=True)
class Principal:
    """An authenticated actor. ``name`` is what the audit trail records as the actor, ``credential``
    what it acted with (``key:<prefix>``; ``cli:unverified`` for a name taken from the environment).

    ``personal`` is True only for a person acting with a key they created themselves, which no one
    else has seen: the one credential that counts for a governance act (see ``auth.guard``).
    """

    name: str
    roles: frozenset[Role]
    user_id: int | None = None
    kind: str = "user"  # user | system | ehr
    key_id: int | None = None
    attributes: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    credential: str = "cli:unverified"
    personal: bool = False

    def can(self, permission: Permission) -> bool:
        return is_permitted(self.roles, permission)


#: The platform acting on its own (migrations, scheduled monitoring, automatic rollback).
SYSTEM = Principal(
    name="system", roles=frozenset({Role.ADMIN, Role.DATA_SCIENTIST, Role.OPERATOR, Role.AUDITOR}), kind="system",
    credential="system",
)
