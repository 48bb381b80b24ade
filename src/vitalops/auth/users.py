"""Users and API keys: create, list, disable, enroll, issue, revoke, authenticate.

A user is a ``person`` or a ``service`` account (an EHR, an integration). An admin issues keys to
service accounts only. A person gets a one-time enrollment token (``voe_<prefix>_<secret>``, valid
for hours) from an admin and redeems it for a key that nobody else has seen; with that key they
may create more of their own. Only such personal keys count for governance acts (``auth.guard``).

Keys look like ``vok_<prefix>_<secret>``. Only the sha256 of a key or token is stored; the plain
value is returned once. Keys expire; revoked or expired keys never authenticate.
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
from vitalops.db.tables.identity import ApiKeyRow, EnrollmentRow, UserRow
from vitalops.errors import Conflict, InvalidInput, NotFound, PolicyViolation, Unauthenticated

USER_NAME = re.compile(r"^[a-z][a-z0-9_.-]{1,63}$")
KEY_PATTERN = re.compile(r"^vok_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")
ENROLLMENT_PATTERN = re.compile(r"^voe_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")
#: Roles held by service accounts rather than people.
SERVICE_ROLES = frozenset({Role.EHR})
ENROLLMENT_HOURS_MAX = 7 * 24


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: Role
    created_at: datetime
    disabled: bool
    kind: str = "person"

    def principal(self, key: ApiKeyRow | None = None) -> Principal:
        """The principal of this user; with ``key``, authenticated by it (personal when it is their own)."""
        if key is None:
            return Principal(name=self.name, roles=frozenset({self.role}), user_id=self.id)
        return Principal(name=self.name, roles=frozenset({self.role}), user_id=self.id, key_id=key.id,
                         credential=f"key:{key.prefix}", personal=bool(key.personal) and self.kind == "person")

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "role": self.role.value, "kind": self.kind,
                "created_at": self.created_at, "disabled": self.disabled}


@dataclass(frozen=True)
class ApiKey:
    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked: bool
    personal: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "user": self.user, "name": self.name, "prefix": self.prefix,
                "created_at": self.created_at, "expires_at": self.expires_at, "revoked": self.revoked,
                "personal": self.personal}


@dataclass(frozen=True)
class Enrollment:
    user: str
    prefix: str
    expires_at: datetime

    def to_dict(self) -> dict[str, object]:
        return {"user": self.user, "prefix": self.prefix, "expires_at": self.expires_at}


def parse_role(value: str) -> Role:
    """The role named ``value``; InvalidInput listing the valid roles otherwise."""
    try:
        return Role(value)
    except ValueError:
        valid = ", ".join(role.value for role in Role)
        raise InvalidInput(f"unknown role '{value}'; valid roles are: {valid}") from None


def _to_user(row: UserRow) -> User:
    return User(row.id, row.name, Role(row.role), row.created_at, row.disabled_at is not None, row.kind)


def create_user(session: Session, actor: Principal, name: str, role: str, *, service: bool | None = None) -> User:
    """Create a user with one role: a service account when ``service`` (by default, for the ``ehr``
    role), else a person. Conflict if the name is taken; InvalidInput for a bad name or role."""
    if not USER_NAME.match(name):
        raise InvalidInput(
            f"user name '{name}' is not valid: use 2-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter"
        )
    parsed = parse_role(role)
    if session.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
        raise Conflict(f"a user named '{name}' already exists")
    kind = "service" if (parsed in SERVICE_ROLES if service is None else service) else "person"
    row = UserRow(name=name, role=parsed.value, kind=kind, created_at=utcnow(), created_by=actor.name)
    session.add(row)
    session.flush()
    append(session, actor=actor, action="user.created", object_type="user", object_id=name,
           payload={"role": parsed.value, "kind": kind})
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
        append(session, actor=actor, action="user.disabled", object_type="user", object_id=name,
               payload={"reason": reason})
    return _to_user(row)


def _hash_key(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def _issuable_user(session: Session, user_name: str) -> UserRow:
    user = session.scalar(select(UserRow).where(UserRow.name == user_name))
    if user is None:
        raise NotFound(f"no user named '{user_name}'")
    if user.disabled_at is not None:
        raise Conflict(f"user '{user_name}' is disabled; no key can be issued")
    return user


def _issue_key(
    session: Session, actor: Principal, user: UserRow, *, key_name: str, days: int, personal: bool
) -> tuple[ApiKey, str]:
    if not 1 <= days <= 3650:
        raise InvalidInput(f"key lifetime of {days} days is out of range (1 to 3650)")
    prefix = secrets.token_hex(6)
    plain = f"vok_{prefix}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    row = ApiKeyRow(user_id=user.id, name=key_name, prefix=prefix, key_hash=_hash_key(plain), created_at=now,
                    expires_at=now + timedelta(days=days), issued_by=actor.name, personal=personal)
    session.add(row)
    session.flush()
    append(session, actor=actor, action="key.created", object_type="api_key", object_id=prefix,
           payload={"user": user.name, "personal": personal, "expires_at": row.expires_at.isoformat()})
    return ApiKey(row.id, user.name, key_name, prefix, row.created_at, row.expires_at, False, personal), plain


def create_key(
    session: Session, actor: Principal, user_name: str, *, key_name: str = "default", days: int = 90
) -> tuple[ApiKey, str]:
    """Issue an API key for ``user_name``; returns the key record and the plain key (shown once).

    A service account's key is issued by whoever may manage keys (the caller checks the permission).
    A person's key is created only by that person, acting with a personal key of their own: anyone
    else (an admin included) gets PolicyViolation and should issue an enrollment token instead.
    """
    user = _issuable_user(session, user_name)
    if user.kind == "service":
        return _issue_key(session, actor, user, key_name=key_name, days=days, personal=False)
    if actor.user_id == user.id and actor.personal:
        return _issue_key(session, actor, user, key_name=key_name, days=days, personal=True)
    raise PolicyViolation(
        f"'{user_name}' is a person: only they can create their keys. Issue an enrollment token "
        f"('vitalops users enroll {user_name}') and let them redeem it ('vitalops keys redeem TOKEN')",
        details={"rule": "personal_keys"},
    )


def create_enrollment(session: Session, actor: Principal, user_name: str, *, hours: int = 72) -> tuple[Enrollment, str]:
    """A one-time token with which the person ``user_name`` creates their first key; returned once.
    The caller checks that ``actor`` may manage users. Conflict while the person holds a personal key
    that still works: they create further keys themselves, so a second token (which whoever issued
    it could redeem) is never needed behind their back."""
    if not 1 <= hours <= ENROLLMENT_HOURS_MAX:
        raise InvalidInput(f"an enrollment token lives 1 to {ENROLLMENT_HOURS_MAX} hours, not {hours}")
    user = _issuable_user(session, user_name)
    if user.kind != "person":
        raise InvalidInput(f"'{user_name}' is a service account: issue it a key with 'vitalops keys create'")
    now = utcnow()
    active = session.scalar(
        select(ApiKeyRow.prefix).where(
            ApiKeyRow.user_id == user.id, ApiKeyRow.personal.is_(True), ApiKeyRow.revoked_at.is_(None),
            ApiKeyRow.expires_at > now,
        )
    )
    if active is not None:
        raise Conflict(f"'{user_name}' holds a personal key already and creates further keys themselves; "
                       "revoke their keys first if they lost them")
    prefix = secrets.token_hex(6)
    plain = f"voe_{prefix}_{secrets.token_urlsafe(32)}"
    row = EnrollmentRow(user_id=user.id, prefix=prefix, token_hash=_hash_key(plain), created_at=now,
                        created_by=actor.name, expires_at=now + timedelta(hours=hours))
    session.add(row)
    append(session, actor=actor, action="enrollment.created", object_type="user", object_id=user_name,
           payload={"prefix": prefix, "expires_at": row.expires_at.isoformat()})
    return Enrollment(user_name, prefix, row.expires_at), plain


def redeem_enrollment(
    session: Session, token: str, *, key_name: str = "default", days: int = 90
) -> tuple[ApiKey, str]:
    """Exchange a one-time enrollment token for the person's own key (personal); the token is spent.
    Unauthenticated for a malformed, unknown, spent or expired token."""
    match = ENROLLMENT_PATTERN.match(token.strip())
    if match is None:
        raise Unauthenticated("the enrollment token is malformed")
    row = session.scalar(select(EnrollmentRow).where(EnrollmentRow.prefix == match.group(1)).with_for_update())
    if row is None or not hmac.compare_digest(row.token_hash, _hash_key(token.strip())):
        raise Unauthenticated("the enrollment token is not valid", details={"reason": "unknown_token"})
    if row.redeemed_at is not None:
        raise Unauthenticated("the enrollment token was used already", details={"reason": "spent"})
    if row.expires_at <= utcnow():
        raise Unauthenticated("the enrollment token has expired", details={"reason": "expired"})
    user = session.get_one(UserRow, row.user_id)
    if user.disabled_at is not None:
        raise Unauthenticated("the user of this enrollment token is disabled", details={"reason": "disabled"})
    row.redeemed_at = utcnow()
    person = Principal(name=user.name, roles=frozenset({Role(user.role)}), user_id=user.id,
                       credential=f"enrollment:{row.prefix}")
    return _issue_key(session, person, _issuable_user(session, user.name), key_name=key_name, days=days,
                      personal=True)


def list_keys(session: Session, user_name: str | None = None) -> list[ApiKey]:
    query = select(ApiKeyRow, UserRow.name).join(UserRow, UserRow.id == ApiKeyRow.user_id).order_by(ApiKeyRow.id)
    if user_name is not None:
        query = query.where(UserRow.name == user_name)
    return [
        ApiKey(row.id, name, row.name, row.prefix, row.created_at, row.expires_at, row.revoked_at is not None,
               row.personal)
        for row, name in session.execute(query)
    ]


def revoke_key(session: Session, actor: Principal, prefix: str, reason: str) -> None:
    """Revoke the key with ``prefix``; revoking twice is a no-op."""
    row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix))
    if row is None:
        raise NotFound(f"no API key with prefix '{prefix}'")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        append(session, actor=actor, action="key.revoked", object_type="api_key", object_id=prefix,
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
    return _to_user(user).principal(key)
