"""Users and API keys: create, list, disable, issue, revoke, authenticate.

API keys look like ``vok_<prefix>_<secret>``. Only the sha256 of the whole key is stored; the
plain key is returned once, at creation. Keys expire; revoked or expired keys never authenticate.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth.permissions import Role
from vitalops.auth.principal import Principal
from vitalops.core.clock import utcnow
from vitalops.db.tables.identity import ApiKeyRow, UserRow
from vitalops.errors import Conflict, InvalidInput, NotFound, Unauthenticated

USER_NAME = re.compile(r"^[a-z][a-z0-9_.-]{1,63}$")
KEY_PATTERN = re.compile(r"^vok_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: Role
    created_at: datetime
    disabled: bool

    def principal(self, key_id: int | None = None) -> Principal:
        return Principal(name=self.name, roles=frozenset({self.role}), user_id=self.id, key_id=key_id)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "role": self.role.value, "created_at": self.created_at,
                "disabled": self.disabled}


@dataclass(frozen=True)
class ApiKey:
    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked: bool

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "user": self.user, "name": self.name, "prefix": self.prefix,
                "created_at": self.created_at, "expires_at": self.expires_at, "revoked": self.revoked}


def parse_role(value: str) -> Role:
    """The role named ``value``; InvalidInput listing the valid roles otherwise."""
    try:
        return Role(value)
    except ValueError:
        valid = ", ".join(role.value for role in Role)
        raise InvalidInput(f"unknown role '{value}'; valid roles are: {valid}") from None


def _to_user(row: UserRow) -> User:
    return User(row.id, row.name, Role(row.role), row.created_at, row.disabled_at is not None)


def create_user(session: Session, actor: Principal, name: str, role: str) -> User:
    """Create a user with one role. Conflict if the name is taken; InvalidInput for a bad name or role."""
    if not USER_NAME.match(name):
        raise InvalidInput(
            f"user name '{name}' is not valid: use 2-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter"
        )
    parsed = parse_role(role)
    if session.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
        raise Conflict(f"a user named '{name}' already exists")
    row = UserRow(name=name, role=parsed.value, created_at=utcnow(), created_by=actor.name)
    session.add(row)
    session.flush()
    append(session, actor=actor.name, action="user.created", object_type="user", object_id=name,
           payload={"role": parsed.value})
    return _to_user(row)


def get_user(session: Session, name: str) -> User:
    row = session.scalar(select(UserRow).where(UserRow.name == name))
    if row is None:
        raise NotFound(f"no user named '{name}'")
    return _to_user(row)


def list_users(session: Session) -> list[User]:
    return [_to_user(row) for row in session.scalars(select(UserRow).order_by(UserRow.name))]


def disable_user(session: Session, actor: Principal, name: str, reason: str) -> User:
    row = session.scalar(select(UserRow).where(UserRow.name == name))
    if row is None:
        raise NotFound(f"no user named '{name}'")
    if row.disabled_at is None:
        row.disabled_at = utcnow()
        append(session, actor=actor.name, action="user.disabled", object_type="user", object_id=name,
               payload={"reason": reason})
    return _to_user(row)


def _hash_key(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def create_key(
    session: Session, actor: Principal, user_name: str, *, key_name: str = "default", days: int = 90
) -> tuple[ApiKey, str]:
    """Issue an API key for ``user_name``; returns the key record and the plain key (shown once)."""
    if not 1 <= days <= 3650:
        raise InvalidInput(f"key lifetime of {days} days is out of range (1 to 3650)")
    user = session.scalar(select(UserRow).where(UserRow.name == user_name))
    if user is None:
        raise NotFound(f"no user named '{user_name}'")
    if user.disabled_at is not None:
        raise Conflict(f"user '{user_name}' is disabled; no key can be issued")
    prefix = secrets.token_hex(6)
    plain = f"vok_{prefix}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    row = ApiKeyRow(user_id=user.id, name=key_name, prefix=prefix, key_hash=_hash_key(plain), created_at=now,
                    expires_at=now + timedelta(days=days))
    session.add(row)
    session.flush()
    append(session, actor=actor.name, action="key.created", object_type="api_key", object_id=prefix,
           payload={"user": user_name, "expires_at": row.expires_at.isoformat()})
    return ApiKey(row.id, user_name, key_name, prefix, row.created_at, row.expires_at, False), plain


def list_keys(session: Session, user_name: str | None = None) -> list[ApiKey]:
    query = select(ApiKeyRow, UserRow.name).join(UserRow, UserRow.id == ApiKeyRow.user_id).order_by(ApiKeyRow.id)
    if user_name is not None:
        query = query.where(UserRow.name == user_name)
    return [
        ApiKey(row.id, name, row.name, row.prefix, row.created_at, row.expires_at, row.revoked_at is not None)
        for row, name in session.execute(query)
    ]


def revoke_key(session: Session, actor: Principal, prefix: str, reason: str) -> None:
    """Revoke the key with ``prefix``; revoking twice is a no-op."""
    row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix))
    if row is None:
        raise NotFound(f"no API key with prefix '{prefix}'")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        append(session, actor=actor.name, action="key.revoked", object_type="api_key", object_id=prefix,
               payload={"reason": reason})


def authenticate_key(session: Session, plain: str) -> Principal:
    """The principal a presented API key stands for. Unauthenticated (with the reason) otherwise."""
    match = KEY_PATTERN.match(plain.strip())
    if match is None:
        raise Unauthenticated("the API key is malformed")
    row = session.execute(
        select(ApiKeyRow, UserRow).join(UserRow, UserRow.id == ApiKeyRow.user_id).where(
            ApiKeyRow.prefix == match.group(1)
        )
    ).first()
    if row is None or not hmac.compare_digest(row[0].key_hash, _hash_key(plain.strip())):
        raise Unauthenticated("the API key is not valid", details={"reason": "unknown_key"})
    key, user = row
    if key.revoked_at is not None:
        raise Unauthenticated("the API key has been revoked", details={"reason": "revoked", "prefix": key.prefix})
    if key.expires_at <= utcnow():
        raise Unauthenticated("the API key has expired", details={"reason": "expired", "prefix": key.prefix})
    if user.disabled_at is not None:
        raise Unauthenticated("the user of this API key is disabled", details={"reason": "disabled"})
    return _to_user(user).principal(key_id=key.id)
