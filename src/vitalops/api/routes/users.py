"""``/v1/users``: manage users and API keys (admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field

from vitalops.api.deps import DatabaseDep, require
from vitalops.auth import Permission, Principal
from vitalops.auth.users import create_key, create_user, list_keys, list_users, revoke_key

router = APIRouter(prefix="/v1/users", tags=["users"])
UserAdmin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]
KeyAdmin = Annotated[Principal, Depends(require(Permission.KEYS_MANAGE))]


class UserCreate(BaseModel):
    name: str = Field(min_length=2, max_length=64)
    role: str


class KeyCreate(BaseModel):
    name: str = Field(default="default", max_length=64)
    days: int = Field(default=90, ge=1, le=3650)


class KeyRevoke(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


@router.get("")
def get_users(database: DatabaseDep, _: UserAdmin) -> dict[str, Any]:
    with database.session() as session:
        return {"users": [user.to_dict() for user in list_users(session)]}


@router.post("", status_code=status.HTTP_201_CREATED)
def post_user(body: UserCreate, database: DatabaseDep, actor: UserAdmin) -> dict[str, Any]:
    with database.session() as session:
        return create_user(session, actor, body.name, body.role).to_dict()


@router.get("/{name}/keys")
def get_keys(name: str, database: DatabaseDep, _: KeyAdmin) -> dict[str, Any]:
    with database.session() as session:
        return {"keys": [key.to_dict() for key in list_keys(session, name)]}


@router.post("/{name}/keys", status_code=status.HTTP_201_CREATED)
def post_key(name: str, body: KeyCreate, database: DatabaseDep, actor: KeyAdmin) -> dict[str, Any]:
    """Issue a key; the plain key is in this response only."""
    with database.session() as session:
        key, plain = create_key(session, actor, name, key_name=body.name, days=body.days)
    return key.to_dict() | {"key": plain}


@router.post("/{name}/keys/{prefix}/revoke")
def post_revoke(name: str, prefix: str, body: KeyRevoke, database: DatabaseDep, actor: KeyAdmin) -> dict[str, Any]:
    with database.session() as session:
        revoke_key(session, actor, prefix, body.reason)
    return {"prefix": prefix, "revoked": True}
