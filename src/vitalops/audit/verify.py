"""Walk the audit chain and report the first place it breaks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, TextClause, text

from vitalops.audit.trail import GENESIS_HASH, event_hash
from vitalops.core.clock import as_utc, isoformat_utc


@dataclass(frozen=True)
class ChainReport:
    """The outcome of a verification. ``ok`` is False when ``broken_at`` names a sequence number."""

    events: int
    head_seq: int
    head_hash: str
    broken_at: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok, "events": self.events, "head_seq": self.head_seq, "head_hash": self.head_hash,
            "broken_at": self.broken_at, "problem": self.problem,
        }


# The canonical time text is produced by the database itself, so that verifying does no date
# arithmetic per row: SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC by construction), PostgreSQL
# formats its timestamptz in UTC.
_AT_TEXT = {
    "sqlite": "replace(at, ' ', 'T') || 'Z'",
    "postgresql": "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
}


def _query(dialect: str) -> TextClause:
    at_text = _AT_TEXT.get(dialect, "at")
    return text(
        f"SELECT seq, {at_text}, actor, action, object_type, object_id, payload_json, prev_hash, hash, credential "  # noqa: S608
        "FROM audit_events ORDER BY seq"
    )


def verify_chain(
    engine: Engine, *, batch: int = 20_000, progress: Callable[[int], None] | None = None
) -> ChainReport:
    """Recompute every hash in sequence order.

    Detects an edited row (its hash no longer matches), a deleted row (a gap in ``seq``) and
    reordered rows (a ``prev_hash`` that is not the previous row's hash).
    """
    with engine.connect() as connection:
        query = _query(engine.dialect.name)
        connection.execution_options(vitalops_read_only=True, stream_results=True, yield_per=batch)
        result = connection.execute(query)
        try:
            return _walk(result, batch, progress)
        finally:
            result.close()


def _walk(result: Any, batch: int, progress: Callable[[int], None] | None) -> ChainReport:
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    for rows in result.partitions(batch):
        for seq, at_text, actor, action, object_type, object_id, payload_json, stored_prev, stored_hash, via in rows:
            if seq != expected_seq:
                return ChainReport(count, expected_seq - 1, prev_hash, expected_seq,
                                   f"event {expected_seq} is missing (next stored event is {seq})")
            if stored_prev != prev_hash:
                return ChainReport(count, seq - 1, prev_hash, seq, f"event {seq} does not link to event {seq - 1}")
            if not isinstance(at_text, str):
                at_text = isoformat_utc(as_utc(at_text))
            digest = event_hash(seq, at_text, actor, action, object_type, object_id, payload_json, stored_prev, via)
            if digest != stored_hash:
                return ChainReport(count, seq - 1, prev_hash, seq, f"event {seq} was altered after it was written")
            prev_hash, expected_seq, count = stored_hash, seq + 1, count + 1
        if progress is not None:
            progress(count)
    return ChainReport(count, expected_seq - 1, prev_hash)
