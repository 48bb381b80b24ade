"""``/v1/sites``: the registered sites (read by anyone who reads models; added by admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field

from vitalops.api.deps import DatabaseDep, require
from vitalops.api.params import Label, Name
from vitalops.auth import Permission, Principal
from vitalops.sites import create_site, list_sites

router = APIRouter(prefix="/v1/sites", tags=["sites"])
Reader = Annotated[Principal, Depends(require(Permission.MODELS_READ))]
Admin = Annotated[Principal, Depends(require(Permission.SETTINGS_MANAGE))]


class SiteCreate(BaseModel):
    code: Name
    name: Label | None = None
    tag_values: list[Name] = Field(default_factory=list, max_length=50)


@router.get("")
def get_sites(database: DatabaseDep, _: Reader) -> dict[str, Any]:
    with database.read_session() as session:
        return {"sites": [site.to_dict() for site in list_sites(session)]}


@router.post("", status_code=status.HTTP_201_CREATED)
def post_site(body: SiteCreate, database: DatabaseDep, actor: Admin) -> dict[str, Any]:
    with database.session() as session:
        return create_site(session, actor, body.code, name=body.name, tag_values=body.tag_values).to_dict()
