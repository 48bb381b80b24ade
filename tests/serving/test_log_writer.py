"""Group commit: concurrent writers share transactions, each returns only once its rows committed, and
one failing request fails alone."""

from __future__ import annotations

import threading

import pytest

from vitalops.audit import append, list_events, verify_chain
from vitalops.errors import InvalidInput
from vitalops.serving.log_writer import LogWriter


def test_concurrent_writes_commit_together_and_a_bad_one_fails_alone(database):
    writer = LogWriter(database, max_batch=8)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        def add(session) -> None:
            payload = {"mrn": "x"} if index == 13 else {"n": index}  # 13 names patient data: refused
            append(session, actor="writer-test", action="test.logged", object_type="test", object_id=str(index),
                   payload=payload)

        try:
            writer.write(add)
            with database.session() as session:  # committed before write() returned
                assert list_events(session, object_type="test", object_id=str(index))
        except InvalidInput as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(errors) == 1 and "patient data" in str(errors[0])
    with database.session() as session:
        logged = list_events(session, action="test.logged", limit=100)
    assert sorted(int(e.object_id) for e in logged) == [i for i in range(40) if i != 13]
    assert verify_chain(database.engine).ok
    with pytest.raises(InvalidInput):
        writer.write(lambda session: append(session, actor="a", action="b", object_type="c", object_id="d",
                                            payload={"ssn": "1"}))
