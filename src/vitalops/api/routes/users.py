"""``/v1/users``: manage users and API keys (admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, status
from pydantic import BaseModel, Field

from vitalops.api.deps import DatabaseDep, PrincipalDep, require
from vitalops.api.params import Label, Name, NamePath, Reason
from vitalops.auth import Permission, Principal
from vitalops.auth.users import (
    create_enrollment,
    create_key,
    create_user,
    list_keys,
    list_users,
    redeem_enrollment,
    revoke_key,
)

router = APIRouter(prefix="/v1/users", tags=["users"])
self_service = APIRouter(prefix="/v1", tags=["users"])
UserAdmin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]
KeyAdmin = Annotated[Principal, Depends(require(Permission.KEYS_MANAGE))]


KeyPrefix = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


class UserCreate(BaseModel):
    name: Name
    role: Label
    service: bool | None = None


class EnrollmentCreate(BaseModel):
    hours: int = Field(default=72, ge=1, le=168)


class EnrollmentRedeem(BaseModel):
    token: str = Field(min_length=20, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")
    name: Label = "default"
    days: int = Field(default=90, ge=1, le=3650)


class KeyCreate(BaseModel):
    name: Label = "default"
    days: int = Field(default=90, ge=1, le=3650)


class KeyRevoke(BaseModel):
    reason: Reason


@router.get("")
def get_users(database: DatabaseDep, _: UserAdmin) -> dict[str, Any]:
    with database.read_session() as session:
        return {"users": [user.to_dict() for user in list_users(session)]}


@router.post("", status_code=status.HTTP_201_CREATED)
def post_user(body: UserCreate, database: DatabaseDep, actor: UserAdmin) -> dict[str, Any]:
    with database.session() as session:
        return create_user(session, actor, body.name, body.role, service=body.service).to_dict()


@router.get("/{name}/keys")
def get_keys(name: NamePath, database: DatabaseDep, _: KeyAdmin) -> dict[str, Any]:
    with database.read_session() as session:
        return {"keys": [key.to_dict() for key in list_keys(session, name)]}


@router.post("/{name}/enrollments", status_code=status.HTTP_201_CREATED)
def post_enrollment(name: NamePath, body: EnrollmentCreate, database: DatabaseDep, actor: UserAdmin) -> dict[str, Any]:
    """A one-time enrollment token for a person, who redeems it for a key of their own (in this response only)."""
    with database.session() as session:
        enrollment, token = create_enrollment(session, actor, name, hours=body.hours)
    return enrollment.to_dict() | {"token": token}


@router.post("/{name}/keys", status_code=status.HTTP_201_CREATED)
def post_key(name: NamePath, body: KeyCreate, database: DatabaseDep, actor: KeyAdmin) -> dict[str, Any]:
    """Issue a key to a service account (people enroll instead); the plain key is in this response only."""
    with database.session() as session:
        key, plain = create_key(session, actor, name, key_name=body.name, days=body.days)
    return key.to_dict() | {"key": plain}


@router.post("/{name}/keys/{prefix}/revoke")
def post_revoke(
    name: NamePath, prefix: KeyPrefix, body: KeyRevoke, database: DatabaseDep, actor: KeyAdmin
) -> dict[str, Any]:
    with database.session() as session:
        revoke_key(session, actor, prefix, body.reason)
    return {"prefix": prefix, "revoked": True}


@self_service.post("/enrollments/redeem", status_code=status.HTTP_201_CREATED)
def post_redeem(body: EnrollmentRedeem, database: DatabaseDep) -> dict[str, Any]:
    """Exchange a one-time enrollment token for your own key (in this response only)."""
    with database.session() as session:
        key, plain = redeem_enrollment(session, body.token, key_name=body.name, days=body.days)
    return key.to_dict() | {"key": plain}


@self_service.post("/me/keys", status_code=status.HTTP_201_CREATED)
def post_my_key(body: KeyCreate, database: DatabaseDep, actor: PrincipalDep) -> dict[str, Any]:
    """Create another key of your own, with a key of your own; the plain key is in this response only."""
    with database.session() as session:
        key, plain = create_key(session, actor, actor.name, key_name=body.name, days=body.days)
    return key.to_dict() | {"key": plain}
