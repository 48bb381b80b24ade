"""Registered sites: the only places a model can be deployed, and (later) the only site codes a feed
may carry.

A site has a short ``code`` (used in deployments, the lake's partitions and reports) and the list of
``tag_values`` that feeds use for it (a ``meta.tag`` code, for example), so a feed's own spelling
never becomes a partition or a label without being registered first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Principal
from vitalops.core.clock import utcnow
from vitalops.db.tables.governance import SiteRow
from vitalops.errors import Conflict, InvalidInput, NotFound

SITE_CODE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Site:
    code: str
    name: str
    tag_values: tuple[str, ...]
    created_at: datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "name": self.name,
            "tag_values": list(self.tag_values),
            "created_at": self.created_at,
        }


def _to_site(row: SiteRow) -> Site:
    return Site(row.code, row.name, tuple(orjson.loads(row.tag_values_json)), row.created_at)


def create_site(
    session: Session, actor: Principal, code: str, *, name: str | None = None, tag_values: list[str] | None = None
) -> Site:
    """Register a site (audited). The caller checks that ``actor`` may manage settings.

    InvalidInput for a malformed code; Conflict when the code, or one of its tag values, is taken.
    """
    if not SITE_CODE.match(code):
        raise InvalidInput(
            "a site code is 1-64 lower-case letters, digits, '_' or '-', starting with a letter",
            details={"field": "code"},
        )
    tags = sorted({code, *(tag_values or [])})
    for existing in list_sites(session):
        if existing.code == code:
            raise Conflict(f"site '{code}' is registered already")
        if set(existing.tag_values) & set(tags):
            raise Conflict(f"a tag value of site '{code}' already maps to site '{existing.code}'")
    row = SiteRow(
        code=code,
        name=name or code,
        tag_values_json=orjson.dumps(tags).decode(),
        created_at=utcnow(),
        created_by=actor.name,
    )
    session.add(row)
    session.flush()
    append(
        session,
        actor=actor,
        action="site.created",
        object_type="site",
        object_id=code,
        payload={"tag_values": len(tags)},
    )
    return _to_site(row)


def list_sites(session: Session) -> list[Site]:
    return [_to_site(row) for row in session.scalars(select(SiteRow).order_by(SiteRow.code))]


def get_site(session: Session, code: str) -> Site:
    """The registered site ``code``; NotFound (listing the registered codes) otherwise."""
    row = session.scalar(select(SiteRow).where(SiteRow.code == code))
    if row is None:
        known = ", ".join(site.code for site in list_sites(session)) or "none yet ('vitalops sites add CODE')"
        raise NotFound(f"site '{code}' is not registered here; registered sites: {known}", details={"field": "site"})
    return _to_site(row)


def require_site(session: Session, code: str) -> Site:
    """Like ``get_site``, for commands that act at a site: an unknown site is bad input (InvalidInput)."""
    try:
        return get_site(session, code)
    except NotFound as missing:
        raise InvalidInput(missing.message, details=missing.details) from None


def site_for_tag(session: Session, tag_value: str) -> Site | None:
    """The site a feed's tag value maps to, or None when no registered site claims it."""
    for site in list_sites(session):
        if tag_value in site.tag_values:
            return site
    return None
