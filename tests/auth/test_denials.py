"""Unauthenticated traffic is audited as bounded counts per window, not a row per request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.conftest import LiveServer
from vitalops.audit import list_events, verify_chain
from vitalops.auth.denials import DenialWindows
from vitalops.core.settings import Settings
from vitalops.db import Database


def _failures(database: Database) -> list:
    with database.session() as session:
        return list_events(session, action="auth.failed", limit=1000)


def test_a_thousand_bad_requests_add_a_bounded_number_of_rows_that_add_up(settings: Settings,
                                                                          database: Database) -> None:
    bad_headers = [{}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Bearer vok_000000000000_" + "x" * 40}]
    with LiveServer(settings, database) as server, httpx.Client(base_url=server.url) as client:
        for index in range(1000):
            path = "/v1/audit" if index % 2 else "/v1/models"
            assert client.get(path, headers=bad_headers[index % 3]).status_code == 401
        assert len(_failures(database)) <= 2 * 3 * 3  # at most windows that closed during the run
    events = _failures(database)  # shutdown flushed the rest
    assert 1 <= len(events) <= 2 * 3 * 2  # routes x reasons x (a minute boundary at most once)
    assert sum(event.payload["count"] for event in events) == 1000
    assert {event.payload["reason"] for event in events} == {"missing_credentials", "malformed", "unknown_key"}
    assert {event.object_id for event in events} == {"/v1/audit", "/v1/models"}
    assert all(event.payload["window_seconds"] == 60 for event in events)
    assert verify_chain(database.engine).ok


def test_windows_flush_when_closed_and_sources_are_capped(database: Database) -> None:
    now = [datetime(2026, 3, 1, 8, 0, 5, tzinfo=UTC)]
    windows = DenialWindows(max_sources=3, clock=lambda: now[0])
    for source in ("a", "b", "c", "d", "e"):
        windows.record(database, reason="missing_credentials", route="/v1/models", source=source)
    assert _failures(database) == [] and windows.pending() == 5
    now[0] += timedelta(minutes=1)
    windows.record(database, reason="missing_credentials", route="/v1/models", source="a")  # the window closed
    events = _failures(database)
    assert sorted((e.payload["source"], e.payload["count"]) for e in events) == [("a", 1), ("b", 1), ("c", 1),
                                                                                 ("other", 2)]
    assert {e.payload["window_start"] for e in events} == {"2026-03-01T08:00:00.000000Z"}
    assert windows.pending() == 1
