"""The API server's monitoring scheduler on a live server: it computes the pending windows of each
deployed model and judges their rules; of several workers over one database one runs each tick; a
run that raises is logged without its text, counted, and the next tick runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest

from tests.conftest import LiveServer, bearer
from tests.monitoring.conftest import DAY0, MODEL, OPERATOR, Monitored
from vitalops.core.clock import utcnow
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.monitoring import engine, scheduler
from vitalops.monitoring.alert_rules import set_rules
from vitalops.monitoring.alerts import list_alerts
from vitalops.monitoring.results import read_results

RULES = """
rules:
  - id: input-drift
    metric: input_drift.psi
    window: 1d
    comparison: ">="
    threshold: 0.2
    min_n: 100
    severity: warning
    action: none
"""


def _every(settings: Settings, cadence: str) -> Settings:
    return Settings(**{**settings.model_dump(), "monitor_every": cadence})


def _recent_day() -> int:
    """The day (counted from DAY0) that ended before yesterday began: complete, labels not mature."""
    return (utcnow() - DAY0).days - 2


def _wait_for(condition: Callable[[], object], seconds: float = 60) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _computed(monitored: Monitored) -> bool:
    """The scheduled run's windows are committed and its rules judged (the run has ended)."""
    with monitored.database.read_session() as session:
        row = scheduler.read_schedule(session)
        return bool(read_results(session, model=MODEL, metric_id="ops.volume")) and row is not None \
            and row.state == "idle"


@pytest.fixture
def scheduler_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("vitalops.monitoring.scheduler")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_cadence_setting_takes_durations_and_refuses_sub_minute_outside_tests(settings):
    assert _every(settings, "250ms").monitor_cadence == timedelta(milliseconds=250)
    production = {**settings.model_dump(), "environment": "production"}
    assert Settings(**{**production, "monitor_every": "15m"}).monitor_cadence == timedelta(minutes=15)
    assert Settings(**{**production, "monitor_every": None}).monitor_cadence is None
    with pytest.raises(Exception, match="at least 1m"):
        Settings(**{**production, "monitor_every": "30s"})
    with pytest.raises(Exception, match="monitor_every"):
        Settings(**{**production, "monitor_every": "1 hour"})


def test_a_live_server_monitors_deployed_models_on_its_cadence(monitored: Monitored, tmp_path, make_user):
    day = _recent_day()
    monitored.score_day(tmp_path, "north", day, 150)
    monitored.score_day(tmp_path, "south", day, 150, scale={"creatinine_last": 88.42})
    set_rules(monitored.database, OPERATOR, MODEL, RULES)
    _, reader = make_user("auditor")
    settings = _every(monitored.settings, "300ms")
    with LiveServer(settings, monitored.database) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        def finished() -> dict | None:
            state = client.get("/v1/monitoring/scheduler", headers=bearer(reader)).json()
            return state if state["last_run_status"] == "ok" and _computed(monitored) else None

        state = _wait_for(finished)
        assert client.get("/v1/monitoring/scheduler").status_code == 401
    assert state["enabled"] and state["cadence"] == "300ms" and state["window"] == "1d"
    assert state["next_due_at"] is not None and state["failures_total"] == 0
    with monitored.database.read_session() as session:
        results = read_results(session, model=MODEL, metric_id="input_drift.psi/creatinine_last")
    day_start = DAY0 + timedelta(days=day)
    assert {(r.site, r.window_start) for r in results} == {("north", day_start), ("south", day_start)}
    [south] = [r for r in results if r.site == "south"]
    assert south.status == "flagged"
    alerts = list_alerts(monitored.database, OPERATOR, model=MODEL)
    assert any(a.metric == "input_drift.psi/creatinine_last" and a.site == "south" for a in alerts)
    assert not any(a.site == "north" and a.metric == "input_drift.psi/creatinine_last" for a in alerts)


def test_nothing_is_pending_once_computed_and_an_unripe_window_is_computed_again(monitored: Monitored, tmp_path):
    day = _recent_day()
    monitored.score_day(tmp_path, "north", day, 150)
    now = utcnow()
    window = timedelta(days=1)
    with monitored.database.read_session() as session:
        since, until = scheduler.pending_range(session, monitored.lake_root, MODEL, window, now)
    assert since >= DAY0 + timedelta(days=day) and until - since >= window
    run = scheduler.MonitoringScheduler(monitored.database, _every(monitored.settings, "1h"))
    run.run_once(now)
    with monitored.database.read_session() as session:
        assert scheduler.pending_range(session, monitored.lake_root, MODEL, window, now) is None
        # once the 48-hour label horizon has passed, the window computed before it is due again
        later = now + timedelta(days=3)
        again = scheduler.pending_range(session, monitored.lake_root, MODEL, window, later)
    assert again is not None and again[0] == DAY0 + timedelta(days=day)


def test_of_workers_claiming_one_tick_at_once_exactly_one_wins(database: Database):
    now = utcnow()
    tick = scheduler.tick_of(now, timedelta(minutes=5))
    barrier = threading.Barrier(4)
    won: list[str] = []

    def claim(holder: str) -> None:
        barrier.wait()
        if scheduler.claim_tick(database, holder, tick, now=now, lease=timedelta(minutes=30)):
            won.append(holder)

    threads = [threading.Thread(target=claim, args=(f"worker{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert not scheduler.claim_tick(database, "late", tick, now=now, lease=timedelta(minutes=30))
    # the next tick is not taken while the lease is held and live, but is once it expired
    assert not scheduler.claim_tick(database, "other", tick + 1, now=now, lease=timedelta(minutes=30))
    assert scheduler.claim_tick(database, "other", tick + 1, now=now + timedelta(minutes=31),
                                lease=timedelta(minutes=30))


def test_two_servers_over_one_database_never_run_the_same_tick(monitored: Monitored, monkeypatch):
    ran: list[tuple[int, str]] = []
    real = scheduler.MonitoringScheduler.run_once
    cadence = timedelta(milliseconds=300)

    def recorded(self: scheduler.MonitoringScheduler, now) -> None:
        ran.append((scheduler.tick_of(now, cadence), self.holder))
        time.sleep(0.05)  # both servers wake at the same boundary: keep the first one's lease held a while
        real(self, now)

    monkeypatch.setattr(scheduler.MonitoringScheduler, "run_once", recorded)
    settings = _every(monitored.settings, "300ms")
    with LiveServer(settings, monitored.database), LiveServer(settings, monitored.database):
        _wait_for(lambda: len(ran) >= 6, seconds=30)
    ticks = [tick for tick, _ in ran]
    assert len(ticks) == len(set(ticks))


def test_a_run_that_raises_is_logged_without_its_text_counted_and_the_next_runs(
        monitored: Monitored, tmp_path, make_user, monkeypatch, scheduler_log):
    monitored.score_day(tmp_path, "north", _recent_day(), 150)
    real = engine.run_monitoring
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("creatinine 4.2 of MRN 424242 out of range")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "run_monitoring", failing_once)
    _, reader = make_user("auditor")
    with LiveServer(_every(monitored.settings, "300ms"), monitored.database) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        def recovered() -> dict | None:
            state = client.get("/v1/monitoring/scheduler", headers=bearer(reader)).json()
            return state if state["last_run_status"] == "ok" and _computed(monitored) else None

        state = _wait_for(recovered)
    assert state["failures_total"] == 1 and len(calls) >= 2
    failed = [r for r in scheduler_log if r.getMessage() == "scheduled monitoring run failed"]
    assert len(failed) == 1 and failed[0].__dict__["error_type"] == "RuntimeError"
    assert failed[0].__dict__["model"] == MODEL
    assert not any("424242" in str(r.__dict__) for r in scheduler_log)
