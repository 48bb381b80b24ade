"""Walk the audit chain, check it against the signed checkpoints, and report the first break.

What is caught (docs/security.md): an edited event (its MAC no longer matches), a deleted one (a
gap in ``seq``), reordered ones (a ``prev_hash`` that is not the previous event's hash), a chain
rehashed forward or an appended forged event (without the audit key no one can compute a valid
MAC; a plain sha256 is accepted only up to the switch-over point the checkpoints record), a chain
rewritten under a checkpoint (the hash there differs), and tail truncation below the newest
checkpoint (the head is behind it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, TextClause, text

from vitalops.audit.checkpoints import Checkpoint, read_checkpoints, write_checkpoint
from vitalops.audit.keys import event_mac_base
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
    #: Events up to this sequence number predate the keyed chain (plain sha256).
    keyed_after: int = 0
    checkpoints: int = 0
    checkpoint_written: bool = False

    @property
    def ok(self) -> bool:
        return self.broken_at is None

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok, "events": self.events, "head_seq": self.head_seq, "head_hash": self.head_hash,
            "broken_at": self.broken_at, "problem": self.problem, "keyed_after": self.keyed_after,
            "checkpoints": self.checkpoints, "checkpoint_written": self.checkpoint_written,
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
    engine: Engine,
    *,
    checkpoints: Path | None = None,
    record_checkpoint: bool = False,
    secret: str | None = None,
    batch: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> ChainReport:
    """Recompute every event's MAC in sequence order and check the chain against ``checkpoints``.

    ``checkpoints`` is the signed checkpoint file (``Settings.audit_checkpoints_path``); without
    it, every event must carry a keyed MAC and truncation cannot be judged. With
    ``record_checkpoint``, an intact chain's head is appended to the file. ``secret`` defaults to
    the installation's audit key.
    """
    known: list[Checkpoint] = []
    if checkpoints is not None:
        known, trouble = read_checkpoints(checkpoints, secret)
        if trouble is not None:
            return ChainReport(0, 0, GENESIS_HASH, 0, trouble)
    keyed_after = known[0].keyed_after if known else 0
    if any(checkpoint.keyed_after != keyed_after for checkpoint in known):
        return ChainReport(0, 0, GENESIS_HASH, 0, "the checkpoints disagree on where the keyed chain begins")
    with engine.connect() as connection:
        query = _query(engine.dialect.name)
        connection.execution_options(vitalops_read_only=True, stream_results=True, yield_per=batch)
        result = connection.execute(query)
        try:
            report = _walk(result, batch, progress, event_mac_base(secret), keyed_after,
                           {checkpoint.seq: checkpoint.hash for checkpoint in known})
        finally:
            result.close()
    newest = max((checkpoint.seq for checkpoint in known), default=0)
    if report.ok and report.head_seq < newest:
        return ChainReport(report.events, report.head_seq, report.head_hash, report.head_seq + 1,
                           f"the trail ends at event {report.head_seq} but a signed checkpoint saw event {newest}: "
                           "events were removed from its end", keyed_after=keyed_after, checkpoints=len(known))
    written = False
    if report.ok and record_checkpoint and checkpoints is not None and (report.head_seq > newest or not known):
        write_checkpoint(checkpoints, report.head_seq, report.head_hash, keyed_after, secret)
        written = True
    return ChainReport(report.events, report.head_seq, report.head_hash, report.broken_at, report.problem,
                       keyed_after=keyed_after, checkpoints=len(known), checkpoint_written=written)


def _walk(result: Any, batch: int, progress: Callable[[int], None] | None, mac_base: Any, keyed_after: int,
          expected: dict[int, str]) -> ChainReport:
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    dumps = orjson.dumps
    for rows in result.partitions(batch):
        for seq, at_text, actor, action, object_type, object_id, payload_json, stored_prev, stored_hash, via in rows:
            if seq != expected_seq:
                return ChainReport(count, expected_seq - 1, prev_hash, expected_seq,
                                   f"event {expected_seq} is missing (next stored event is {seq})")
            if stored_prev != prev_hash:
                return ChainReport(count, seq - 1, prev_hash, seq, f"event {seq} does not link to event {seq - 1}")
            if not isinstance(at_text, str):
                at_text = isoformat_utc(as_utc(at_text))
            if seq > keyed_after:
                fields: list[object] = [seq, at_text, actor, action, object_type, object_id, payload_json, stored_prev]
                if via is not None:
                    fields.append(via)
                mac = mac_base.copy()
                mac.update(dumps(fields))
                digest = mac.hexdigest()
            else:
                digest = event_hash(seq, at_text, actor, action, object_type, object_id, payload_json, stored_prev,
                                    via)
            if digest != stored_hash:
                return ChainReport(count, seq - 1, prev_hash, seq,
                                   f"event {seq} was altered, forged or rehashed after it was written")
            if seq in expected and expected[seq] != stored_hash:
                return ChainReport(count, seq - 1, prev_hash, seq, f"event {seq} differs from its signed checkpoint")
            prev_hash, expected_seq, count = stored_hash, seq + 1, count + 1
        if progress is not None:
            progress(count)
    return ChainReport(count, expected_seq - 1, prev_hash)


def mark_keyed_chain(engine: Engine, checkpoints: Path, secret: str | None = None) -> Checkpoint | None:
    """Record the switch-over point once, in the first checkpoint; None when there are checkpoints already.

    Called by ``vitalops init``. The events that verify as plain sha256 from the start of the chain
    predate the key; every later one must verify with it. Nothing is written when the chain does
    not verify under that rule (a broken chain is never blessed).
    """
    known, trouble = read_checkpoints(checkpoints, secret)
    if known or trouble is not None:
        return None
    legacy = _scan(engine, 2**63 - 1, secret)
    keyed_after = legacy.head_seq if legacy.ok else (legacy.broken_at or 1) - 1
    report = legacy if legacy.ok else _scan(engine, keyed_after, secret)
    if not report.ok:
        return None
    return write_checkpoint(checkpoints, report.head_seq, report.head_hash, keyed_after, secret)


def _scan(engine: Engine, keyed_after: int, secret: str | None) -> ChainReport:
    with engine.connect() as connection:
        connection.execution_options(vitalops_read_only=True, stream_results=True, yield_per=20_000)
        result = connection.execute(_query(engine.dialect.name))
        try:
            return _walk(result, 20_000, None, event_mac_base(secret), keyed_after, {})
        finally:
            result.close()
