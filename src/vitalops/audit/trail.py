"""The keyed, hash-chained, append-only audit trail.

Each event's ``hash`` is HMAC-SHA256, under a key derived from the installation's audit secret
(``audit.keys``; kept outside the database), over the canonical JSON list
``[seq, at, actor, action, object_type, object_id, payload_json, prev_hash]``, with the acting
credential (``key:<prefix>``, ``cli:unverified``, ``system``) appended as a ninth element when the
event records one; the first event's ``prev_hash`` is 64 zeros. Events written before the chain
was keyed carry plain sha256 over the same list (``event_hash``); the switch-over sequence number
is recorded in the signed checkpoints outside the database (``audit.checkpoints``). Appends happen inside the caller's
transaction, so a rolled-back change leaves no event and a committed change always has one.
Appenders are serialized for the length of their transaction (PostgreSQL: a transaction-scoped
advisory lock; SQLite: ``BEGIN IMMEDIATE``), so concurrent processes can never fork the chain; the
primary key on ``seq`` is the backstop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import event, insert, select, text
from sqlalchemy.orm import Session

from vitalops.audit.keys import event_mac_base
from vitalops.core.clock import as_utc, isoformat_utc, utcnow
from vitalops.db.tables.audit import AuditEventRow
from vitalops.errors import InvalidInput

GENESIS_HASH = "0" * 64
_APPEND_LOCK = 7_262_001
_HEAD_KEY = "vitalops.audit_head"
_PENDING_KEY = "vitalops.audit_pending"
#: Payload keys that would name patient data. The audit trail holds ids, counts, hashes, reasons.
FORBIDDEN_PAYLOAD_KEYS = frozenset(
    {"name", "given", "family", "mrn", "ssn", "birth_date", "birthdate", "address", "phone", "email",
     "telecom", "patient_id", "source_patient_id"}
)


class Actor(Protocol):
    """Who acted: anything with a name and the credential it acted with (an ``auth.Principal``)."""

    @property
    def name(self) -> str: ...

    @property
    def credential(self) -> str: ...


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str
    credential: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "at": isoformat_utc(self.at), "actor": self.actor, "credential": self.credential,
            "action": self.action, "object_type": self.object_type, "object_id": self.object_id,
            "payload": self.payload, "prev_hash": self.prev_hash, "hash": self.hash,
        }


def event_hash(
    seq: int, at_text: str, actor: str, action: str, object_type: str, object_id: str, payload_json: str,
    prev_hash: str, credential: str | None = None,
) -> str:
    """The hash of one event over its canonical encoding (the credential is part of it when present)."""
    fields: list[object] = [seq, at_text, actor, action, object_type, object_id, payload_json, prev_hash]
    if credential is not None:
        fields.append(credential)
    return hashlib.sha256(orjson.dumps(fields)).hexdigest()


def keyed_event_hash(
    mac_base: Any, seq: int, at_text: str, actor: str, action: str, object_type: str, object_id: str,
    payload_json: str, prev_hash: str, credential: str | None = None,
) -> str:
    """The HMAC of one event over the same canonical encoding (``mac_base`` from ``keys.event_mac_base``)."""
    fields: list[object] = [seq, at_text, actor, action, object_type, object_id, payload_json, prev_hash]
    if credential is not None:
        fields.append(credential)
    mac = mac_base.copy()
    mac.update(orjson.dumps(fields))
    return str(mac.hexdigest())


def _check_payload(payload: dict[str, Any]) -> None:
    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if str(key).lower() in FORBIDDEN_PAYLOAD_KEYS:
                    raise InvalidInput(f"audit payload key '{key}' would record patient data; record an id instead")
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(payload)


def _head(session: Session) -> tuple[int, str]:
    cached = session.info.get(_HEAD_KEY)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK})
    row = session.execute(
        select(AuditEventRow.seq, AuditEventRow.hash).order_by(AuditEventRow.seq.desc()).limit(1)
    ).first()
    return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))


def append(
    session: Session,
    *,
    actor: str | Actor,
    action: str,
    object_type: str,
    object_id: str,
    payload: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event in ``session``'s transaction and return it.

    ``actor`` is a principal (its name and credential are recorded) or, for events no principal
    causes, a plain name. Raises InvalidInput when the payload has a key that names patient data.
    """
    if isinstance(actor, str):
        actor_name, credential = actor, None
    else:
        actor_name, credential = actor.name, actor.credential
    payload = payload or {}
    _check_payload(payload)
    moment = as_utc(at or utcnow())
    at_text = isoformat_utc(moment)
    payload_json = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z, default=str).decode()
    seq, prev_hash = _head(session)
    seq += 1
    digest = keyed_event_hash(event_mac_base(), seq, at_text, actor_name, action, object_type, object_id,
                              payload_json, prev_hash, credential)
    session.info.setdefault(_PENDING_KEY, []).append(
        {"seq": seq, "at": moment, "actor": actor_name, "action": action, "object_type": object_type,
         "object_id": object_id, "payload_json": payload_json, "prev_hash": prev_hash, "hash": digest,
         "credential": credential}
    )
    session.info[_HEAD_KEY] = (seq, digest)
    return AuditEvent(seq, moment, actor_name, action, object_type, object_id, payload, prev_hash, digest, credential)


def flush_events(session: Session) -> None:
    """Write the events appended so far in this transaction (one multi-row insert)."""
    pending = session.info.pop(_PENDING_KEY, None)
    if pending:
        session.execute(insert(AuditEventRow), pending)


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    # Events are buffered and written as one insert just before the transaction commits: same
    # transaction, same atomicity, a fraction of the round trips.
    flush_events(session)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_soft_rollback")
def _forget_head(session: Session, *_: Any) -> None:
    # The cached head is valid only while this transaction holds the append lock.
    session.info.pop(_HEAD_KEY, None)
    session.info.pop(_PENDING_KEY, None)


def _row_to_event(row: Any) -> AuditEvent:
    return AuditEvent(
        seq=int(row.seq), at=as_utc(row.at), actor=row.actor, action=row.action, object_type=row.object_type,
        object_id=row.object_id, payload=orjson.loads(row.payload_json), prev_hash=row.prev_hash, hash=row.hash,
        credential=row.credential,
    )


def list_events(
    session: Session,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    action: str | None = None,
    after_seq: int | None = None,
    limit: int = 100,
    newest_first: bool = True,
) -> list[AuditEvent]:
    """A page of events matching the filters (including those appended earlier in this transaction)."""
    flush_events(session)
    query = select(AuditEventRow)
    if since is not None:
        query = query.where(AuditEventRow.at >= as_utc(since))
    if actor is not None:
        query = query.where(AuditEventRow.actor == actor)
    if object_type is not None:
        query = query.where(AuditEventRow.object_type == object_type)
    if object_id is not None:
        query = query.where(AuditEventRow.object_id == object_id)
    if action is not None:
        query = query.where(AuditEventRow.action == action)
    if after_seq is not None:
        query = query.where(AuditEventRow.seq > after_seq)
    query = query.order_by(AuditEventRow.seq.desc() if newest_first else AuditEventRow.seq).limit(limit)
    return [_row_to_event(row) for row in session.scalars(query)]


def iter_events(session: Session, *, since: datetime | None = None, batch: int = 10_000) -> Iterator[AuditEvent]:
    """Every event in sequence order, streamed."""
    flush_events(session)
    query = select(AuditEventRow).order_by(AuditEventRow.seq)
    if since is not None:
        query = query.where(AuditEventRow.at >= as_utc(since))
    for row in session.scalars(query.execution_options(yield_per=batch)):
        yield _row_to_event(row)
