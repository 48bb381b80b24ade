"""Read sessions never write and never wait for the write lock; a pooled connection moves between
reading and writing and keeps each transaction's mode."""

from __future__ import annotations

import pytest
from sqlalchemy import exc, func, select

from vitalops.auth import SYSTEM
from vitalops.db.tables.governance import SiteRow
from vitalops.errors import ServiceUnavailable
from vitalops.sites import create_site


def _sites(database) -> int:
    with database.read_session() as session:
        return int(session.scalar(select(func.count()).select_from(SiteRow)))


def test_a_read_session_refuses_a_write_and_a_write_session_after_it_writes(database):
    for round_ in range(3):  # the same pooled connection, read then write, three times over
        with pytest.raises((ServiceUnavailable, exc.DBAPIError)):
            with database.read_session() as session:
                create_site(session, SYSTEM, f"read{round_}")
                session.flush()
        with database.session() as session:
            create_site(session, SYSTEM, f"write{round_}")
        assert _sites(database) == round_ + 1
    with database.read_session() as session:
        assert sorted(session.scalars(select(SiteRow.code))) == ["write0", "write1", "write2"]


def test_a_read_session_reads_while_a_writer_holds_its_transaction(database):
    with database.session() as writer:
        create_site(writer, SYSTEM, "pending")
        writer.flush()  # the writer holds the write lock (SQLite: BEGIN IMMEDIATE) until it commits
        assert _sites(database) == 0  # a snapshot read beside it: no wait, and no uncommitted row
    assert _sites(database) == 1
