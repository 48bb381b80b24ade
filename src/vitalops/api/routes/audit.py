"""``/v1/audit``: read the audit trail (auditors), and verify the chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from vitalops.api.deps import DatabaseDep, SettingsDep, require
from vitalops.api.params import MomentQuery, NameQuery, SeqCursor
from vitalops.audit import list_events, verify_chain
from vitalops.auth import Permission, Principal

router = APIRouter(prefix="/v1/audit", tags=["audit"])
AuditReader = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]


@router.get("")
def read_events(
    database: DatabaseDep,
    _: AuditReader,
    since: MomentQuery = None,
    actor: NameQuery = None,
    object_type: NameQuery = None,
    object_id: NameQuery = None,
    action: NameQuery = None,
    after_seq: SeqCursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Events, newest first (or oldest first after ``after_seq`` for paging forward); every filter narrows."""
    with database.read_session() as session:
        events = list_events(session, since=since, actor=actor, object_type=object_type, object_id=object_id,
                             action=action, after_seq=after_seq, limit=limit, newest_first=after_seq is None)
    return {"events": [event.to_dict() for event in events]}


@router.get("/verify")
def verify(database: DatabaseDep, settings: SettingsDep, _: AuditReader) -> dict[str, object]:
    """Walk the chain against the signed checkpoints; ``ok`` false names the first broken event.
    An intact chain's head is recorded as a new checkpoint."""
    return verify_chain(database.engine, checkpoints=settings.audit_checkpoints_path,
                        record_checkpoint=True).to_dict()
