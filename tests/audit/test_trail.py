from __future__ import annotations

import multiprocessing
from datetime import timedelta

import pytest
import sqlalchemy as sa

from vitalops.audit import append, list_events, verify_chain
from vitalops.audit.trail import GENESIS_HASH
from vitalops.core.clock import utcnow
from vitalops.db import Database
from vitalops.errors import InvalidInput


def _append_some(database: Database, count: int, actor: str = "tester") -> None:
    with database.session() as session:
        for index in range(count):
            append(session, actor=actor, action="thing.changed", object_type="thing", object_id=str(index),
                   payload={"index": index})


def test_events_chain_from_genesis_and_verify(database: Database) -> None:
    _append_some(database, 5)
    with database.session() as session:
        events = list_events(session, newest_first=False)
    assert [event.seq for event in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(events, events[1:], strict=False))
    report = verify_chain(database.engine)
    assert report.ok and report.events == 5 and report.head_hash == events[-1].hash


def test_a_rolled_back_change_leaves_no_event(database: Database) -> None:
    _append_some(database, 1)
    with pytest.raises(RuntimeError), database.session() as session:
        append(session, actor="tester", action="thing.changed", object_type="thing", object_id="x")
        raise RuntimeError("the change failed")
    _append_some(database, 1)
    with database.session() as session:
        assert [event.seq for event in list_events(session, newest_first=False)] == [1, 2]
    assert verify_chain(database.engine).ok


def test_payload_naming_patient_data_is_refused(database: Database) -> None:
    with pytest.raises(InvalidInput, match="mrn"), database.session() as session:
        append(session, actor="tester", action="x", object_type="thing", object_id="1", payload={"mrn": "12345"})


def test_update_and_delete_are_rejected_by_the_database(database: Database) -> None:
    _append_some(database, 2)
    statements = ("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1", "DELETE FROM audit_events WHERE seq = 2")
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError), database.engine.begin() as connection:
            connection.execute(sa.text(statement))


def _disable_protection(connection: sa.Connection) -> None:
    """What an attacker with database-owner rights could do: switch the append-only triggers off."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
    else:
        connection.execute(sa.text("DROP TRIGGER audit_events_no_update"))
        connection.execute(sa.text("DROP TRIGGER audit_events_no_delete"))


@pytest.mark.parametrize(
    ("tamper", "broken_at"),
    [
        ("UPDATE audit_events SET payload_json = 'tampered' WHERE seq = 3", 3),
        ("UPDATE audit_events SET at = at + INTERVAL '1 second' WHERE seq = 4", 4),
        ("DELETE FROM audit_events WHERE seq = 2", 2),
        ("SWAP", 3),
    ],
)
def test_verify_names_the_first_tampered_event(database: Database, tamper: str, broken_at: int) -> None:
    _append_some(database, 6)
    with database.engine.begin() as connection:
        _disable_protection(connection)
        if tamper == "SWAP":  # reorder: exchange the contents of events 3 and 4, hashes included
            rows = {r.seq: r for r in connection.execute(sa.text("SELECT * FROM audit_events WHERE seq IN (3, 4)"))}
            for seq, other in ((3, 4), (4, 3)):
                source = rows[other]
                connection.execute(
                    sa.text("UPDATE audit_events SET object_id = :o, payload_json = :p, prev_hash = :ph, hash = :h "
                            "WHERE seq = :s"),
                    {"o": source.object_id, "p": source.payload_json, "ph": source.prev_hash, "h": source.hash,
                     "s": seq},
                )
        elif "INTERVAL" in tamper and connection.dialect.name == "sqlite":
            connection.execute(sa.text("UPDATE audit_events SET at = datetime(at, '+1 second') WHERE seq = 4"))
        else:
            connection.execute(sa.text(tamper))
    report = verify_chain(database.engine)
    assert not report.ok
    assert report.broken_at == broken_at


def _append_worker(url: str, worker: int, count: int) -> None:
    database = Database(url)
    for index in range(count):
        with database.session() as session:
            append(session, actor=f"worker{worker}", action="thing.changed", object_type="thing",
                   object_id=f"{worker}-{index}")
    database.dispose()


def test_concurrent_appends_from_several_processes_never_fork_the_chain(database: Database) -> None:
    url = database.engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_worker, args=(url, worker, 40)) for worker in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    report = verify_chain(database.engine)
    assert report.ok
    assert report.events == 160


def test_list_filters_by_object_and_time(database: Database) -> None:
    _append_some(database, 3)
    with database.session() as session:
        assert [e.object_id for e in list_events(session, object_type="thing", object_id="1")] == ["1"]
        assert list_events(session, since=utcnow() + timedelta(hours=1)) == []
