"""The keyed chain against an adversary with write access to the database but not the audit key:
edit, delete, reorder, rehash-forward, forged append and tail truncation are each caught; events
written before the chain was keyed stay verifiable."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from tests.audit.test_trail import _append_some, _disable_protection
from vitalops.audit import mark_keyed_chain, verify_chain
from vitalops.audit.keys import event_mac_base
from vitalops.audit.trail import GENESIS_HASH, event_hash, keyed_event_hash
from vitalops.core.clock import isoformat_utc, utcnow
from vitalops.db import Database
from vitalops.db.tables.audit import AuditEventRow


@pytest.fixture
def checkpoints(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "audit-checkpoints.jsonl"


def _rows(connection: sa.Connection) -> list[sa.Row]:
    return list(connection.execute(sa.select(AuditEventRow).order_by(AuditEventRow.seq)))


def _rehash(connection: sa.Connection, start: int, digest_of) -> None:
    """Recompute every hash from ``start`` on, as an attacker would, with ``digest_of``."""
    rows = _rows(connection)
    prev = GENESIS_HASH if start == 1 else next(r.hash for r in rows if r.seq == start - 1)
    for row in (r for r in rows if r.seq >= start):
        digest = digest_of(row.seq, isoformat_utc(row.at), row.actor, row.action, row.object_type, row.object_id,
                           row.payload_json, prev, row.credential)
        connection.execute(sa.update(AuditEventRow).where(AuditEventRow.seq == row.seq)
                           .values(prev_hash=prev, hash=digest))
        prev = digest


def _verify(database: Database, checkpoints: Path):
    return verify_chain(database.engine, checkpoints=checkpoints, record_checkpoint=True)


@pytest.fixture
def chain(database: Database, checkpoints: Path) -> Database:
    """Six keyed events, verified once (so a signed checkpoint holds the head at event 6)."""
    _append_some(database, 6)
    report = _verify(database, checkpoints)
    assert report.ok and report.checkpoint_written and report.keyed_after == 0
    return database


def _tamper(database: Database, tamper) -> None:
    with database.engine.begin() as connection:
        _disable_protection(connection)
        tamper(connection)


def test_an_edited_event_is_caught(chain: Database, checkpoints: Path) -> None:
    _tamper(chain, lambda c: c.execute(sa.text("UPDATE audit_events SET payload_json = '{}' WHERE seq = 3")))
    assert _verify(chain, checkpoints).broken_at == 3


def test_a_deleted_event_is_caught(chain: Database, checkpoints: Path) -> None:
    _tamper(chain, lambda c: c.execute(sa.text("DELETE FROM audit_events WHERE seq = 2")))
    assert _verify(chain, checkpoints).broken_at == 2


def test_reordered_events_are_caught(chain: Database, checkpoints: Path) -> None:
    def swap(connection: sa.Connection) -> None:
        rows = {r.seq: r for r in _rows(connection) if r.seq in (3, 4)}
        for seq, other in ((3, 4), (4, 3)):
            source = rows[other]
            connection.execute(sa.update(AuditEventRow).where(AuditEventRow.seq == seq).values(
                object_id=source.object_id, payload_json=source.payload_json, prev_hash=source.prev_hash,
                hash=source.hash))

    _tamper(chain, swap)
    assert _verify(chain, checkpoints).broken_at == 3


@pytest.mark.parametrize("how", ["plain_sha256_from_the_edit", "guessed_key_from_the_edit", "plain_sha256_whole_chain"])
def test_a_chain_rehashed_forward_is_caught(chain: Database, checkpoints: Path, how: str) -> None:
    guessed = event_mac_base("a key the attacker guessed")

    def rehash(connection: sa.Connection) -> None:
        connection.execute(sa.text("UPDATE audit_events SET payload_json = '{\"index\": 99}' WHERE seq = 3"))
        if how == "guessed_key_from_the_edit":
            _rehash(connection, 3, lambda *fields: keyed_event_hash(guessed, *fields))
        else:
            _rehash(connection, 1 if how == "plain_sha256_whole_chain" else 3, event_hash)

    _tamper(chain, rehash)
    report = _verify(chain, checkpoints)
    assert report.broken_at == (1 if how == "plain_sha256_whole_chain" else 3)
    assert "altered, forged or rehashed" in str(report.problem)


def test_a_forged_appended_event_is_caught(chain: Database, checkpoints: Path) -> None:
    def forge(connection: sa.Connection) -> None:
        head = _rows(connection)[-1]
        at = utcnow()
        payload = orjson.dumps({"reason": "looks routine"}).decode()
        digest = event_hash(7, isoformat_utc(at), "alice", "model.version.approved", "model_version", "m/1",
                            payload, head.hash)
        connection.execute(sa.insert(AuditEventRow).values(
            seq=7, at=at, actor="alice", action="model.version.approved", object_type="model_version",
            object_id="m/1", payload_json=payload, prev_hash=head.hash, hash=digest))

    _tamper(chain, forge)
    assert _verify(chain, checkpoints).broken_at == 7


def test_tail_truncation_below_a_checkpoint_is_caught(chain: Database, checkpoints: Path) -> None:
    _tamper(chain, lambda c: c.execute(sa.text("DELETE FROM audit_events WHERE seq >= 5")))
    report = _verify(chain, checkpoints)
    assert report.broken_at == 5 and "removed from its end" in str(report.problem)


def test_an_edited_checkpoint_is_caught(chain: Database, checkpoints: Path) -> None:
    _tamper(chain, lambda c: c.execute(sa.text("DELETE FROM audit_events WHERE seq >= 5")))
    entry = orjson.loads(checkpoints.read_bytes().splitlines()[0])
    checkpoints.write_bytes(orjson.dumps(entry | {"seq": 4}) + b"\n")
    report = _verify(chain, checkpoints)
    assert not report.ok and "not signed" in str(report.problem)


def test_events_written_before_the_key_stay_verifiable(database: Database, checkpoints: Path) -> None:
    prev = GENESIS_HASH
    with database.engine.begin() as connection:  # three events as the unkeyed release wrote them
        for seq in (1, 2, 3):
            at = utcnow()
            payload = orjson.dumps({"index": seq}).decode()
            digest = event_hash(seq, isoformat_utc(at), "legacy", "thing.changed", "thing", str(seq), payload, prev,
                                "system")
            connection.execute(sa.insert(AuditEventRow).values(
                seq=seq, at=at, actor="legacy", action="thing.changed", object_type="thing", object_id=str(seq),
                payload_json=payload, prev_hash=prev, hash=digest, credential="system"))
            prev = digest
    assert not verify_chain(database.engine).ok  # unkeyed events fail unless the switch-over is recorded
    marked = mark_keyed_chain(database.engine, checkpoints)
    assert marked is not None and marked.keyed_after == 3
    assert mark_keyed_chain(database.engine, checkpoints) is None  # once
    _append_some(database, 2)
    report = _verify(database, checkpoints)
    assert report.ok and report.events == 5 and report.keyed_after == 3
    def rewrite_legacy(connection: sa.Connection) -> None:  # edit a legacy event and rehash on, unkeyed
        connection.execute(sa.text("UPDATE audit_events SET payload_json = '{}' WHERE seq = 2"))
        _rehash(connection, 2, event_hash)

    _tamper(database, rewrite_legacy)
    report = _verify(database, checkpoints)
    assert report.broken_at == 3 and "signed checkpoint" in str(report.problem)
