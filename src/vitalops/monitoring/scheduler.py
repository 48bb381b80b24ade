"""The API server's monitoring scheduler: every deployed model, every ``VITALOPS_MONITOR_EVERY``.

A background thread (started and stopped by the app's lifespan) wakes at each cadence tick (whole
cadences since the epoch) and tries to claim it: one conditional UPDATE of the schedule's row in
``monitoring_schedule`` moves ``tick`` forward only when it is behind and no live lease is held.
Both SQLite (writes serialize on the database lock, ``BEGIN IMMEDIATE``) and PostgreSQL (the second
UPDATE waits for the first's row lock, then sees the new tick) let exactly one worker win, so of
several workers or servers over one database one runs each tick; a tick missed while a run
overran is not made up (the next run covers its windows). A worker that dies holding the lease
leaves it to expire (``LEASE``, renewed after each model).

The winner runs ``run_monitoring`` as the ``system:monitoring`` principal (audited per window by the
engine) for each model with a live deployment, over its pending windows: from the end of the
newest window it has results for (or its first prediction), and from any earlier window computed
before its labels matured (performance is only written then). The engine is idempotent, so a run
that died midway is resumed by the next. Then the alert rules are judged as ``vitalops monitor run``
does (``evaluate_after_run``), and the retraining requests those alerts recorded are carried out
(``monitoring.retraining``; each has its own lease, so a CLI run at the same time takes none twice).
A model whose run raises is logged by exception type only (its text
may hold a patient's values) and counted; the other models and the next tick go on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vitalops.core.clock import as_utc, utcnow
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.db.tables.monitoring import MonitoringResultRow
from vitalops.db.tables.registry import ModelRow, ModelVersionRow
from vitalops.db.tables.scheduling import MonitoringScheduleRow
from vitalops.errors import NotFound

SCHEDULE = "monitoring"
#: How long a claimed tick's lease lasts without renewal (at least the cadence): after it, a worker
#: that died mid-run no longer holds the schedule.
LEASE = timedelta(minutes=30)
#: The thread wakes at least this often to see whether it was asked to stop.
_POLL_SECONDS = 1.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
log = logging.getLogger("vitalops.monitoring.scheduler")


class SchedulerState(BaseModel):
    """What ``GET /v1/monitoring/scheduler`` reports: this server's settings and the shared last run."""

    enabled: bool
    cadence: str | None
    window: str
    last_run_started_at: datetime | None = None
    last_run_finished_at: datetime | None = None
    last_run_status: str | None = None
    last_run_models: int = 0
    last_run_failures: int = 0
    failures_total: int = 0
    running: bool = False
    next_due_at: datetime | None = None


def tick_of(moment: datetime, cadence: timedelta) -> int:
    """The cadence tick ``moment`` falls in: whole cadences since the epoch."""
    return (as_utc(moment) - _EPOCH) // cadence


def tick_start(tick: int, cadence: timedelta) -> datetime:
    return _EPOCH + tick * cadence


def claim_tick(database: Database, holder: str, tick: int, *, now: datetime, lease: timedelta) -> bool:
    """Take the schedule's lease for ``tick``: True for exactly one of the workers that try."""
    with database.session() as session:
        dialect: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(dialect.insert(MonitoringScheduleRow).values(
            name=SCHEDULE, tick=-1, state="idle", models=0, failures=0, failures_total=0,
        ).on_conflict_do_nothing(index_elements=["name"]))
        claimed = session.execute(
            update(MonitoringScheduleRow)
            .where(MonitoringScheduleRow.name == SCHEDULE, MonitoringScheduleRow.tick < tick,
                   or_(MonitoringScheduleRow.state != "running", MonitoringScheduleRow.lease_expires_at < now))
            .values(tick=tick, state="running", holder=holder, started_at=now, lease_expires_at=now + lease)
        )
        return bool(claimed.rowcount)  # type: ignore[attr-defined]


def _renew(database: Database, holder: str, until: datetime) -> None:
    with database.session() as session:
        session.execute(update(MonitoringScheduleRow).where(
            MonitoringScheduleRow.name == SCHEDULE, MonitoringScheduleRow.holder == holder,
            MonitoringScheduleRow.state == "running").values(lease_expires_at=until))


def _finish(database: Database, holder: str, *, models: int, failures: int) -> datetime:
    finished = utcnow()
    with database.session() as session:
        session.execute(update(MonitoringScheduleRow).where(
            MonitoringScheduleRow.name == SCHEDULE, MonitoringScheduleRow.holder == holder,
        ).values(state="idle", finished_at=finished, status="failed" if failures else "ok", models=models,
                 failures=failures, failures_total=MonitoringScheduleRow.failures_total + failures,
                 lease_expires_at=None))
    return finished


def read_schedule(session: Session) -> MonitoringScheduleRow | None:
    return session.get(MonitoringScheduleRow, SCHEDULE)


def deployed_models(session: Session) -> dict[str, set[int]]:
    """Each model with a live deployment, and the versions deployed (any slot, any site)."""
    from vitalops.registry.deployments import list_deployments

    live: dict[str, set[int]] = {}
    for name in session.scalars(select(ModelRow.name).order_by(ModelRow.name)):
        versions = {slot.version for slot in list_deployments(session, name) if slot.version is not None}
        if versions:
            live[name] = versions
    return live


def _label_horizon(session: Session, model: str) -> timedelta | None:
    """The longest label horizon of the model's versions' definitions (None when none is registered)."""
    from vitalops.features.definition_sets import get_definitions
    from vitalops.features.definitions import duration_us

    horizons = []
    for definitions in set(session.scalars(select(ModelVersionRow.definitions_version).join(
            ModelRow, ModelRow.id == ModelVersionRow.model_id).where(ModelRow.name == model))):
        try:
            spec = get_definitions(session, definitions)
        except NotFound:
            continue
        horizons.append(timedelta(microseconds=duration_us(spec.label.horizon)))
    return max(horizons) if horizons else None


def pending_range(session: Session, lake_root: str, model: str, window: timedelta,
                  now: datetime) -> tuple[datetime, datetime] | None:
    """The range of complete windows of ``model`` still to compute (at most ``MAX_WINDOWS``), or None:
    from the end of the newest window with results, or from the first window computed before its
    labels matured, or (nothing computed yet) from the first prediction."""
    from vitalops.monitoring.aggregates import first_prediction_at
    from vitalops.monitoring.engine import MAX_WINDOWS

    floor_now = _EPOCH + (as_utc(now) - _EPOCH) // window * window
    oldest = floor_now - MAX_WINDOWS * window
    computed = [
        (as_utc(start), as_utc(end), as_utc(at)) for start, end, at in session.execute(
            select(MonitoringResultRow.window_start, MonitoringResultRow.window_end,
                   func.max(MonitoringResultRow.computed_at))
            .where(MonitoringResultRow.model == model, MonitoringResultRow.window_start >= oldest)
            .group_by(MonitoringResultRow.window_start, MonitoringResultRow.window_end))
        if as_utc(end) - as_utc(start) == window
    ]
    if computed:
        since = max(end for _, end, _ in computed)
        horizon = _label_horizon(session, model)
        if horizon is not None:
            unripe = [start for start, end, at in computed if at < end + horizon <= now]
            since = min([since, *unripe])
    else:
        first = first_prediction_at(session, lake_root, model)
        if first is None:
            return None
        since = max(as_utc(first), oldest)
    until = min(floor_now, since + MAX_WINDOWS * window)
    return (since, until) if until - since >= window else None


class MonitoringScheduler:
    """The background thread of one API worker; ``start`` and ``stop`` from the lifespan."""

    def __init__(self, database: Database, settings: Settings, *,
                 after_run: Callable[[list[str] | None], None] | None = None) -> None:
        cadence = settings.monitor_cadence
        assert cadence is not None, "the scheduler needs VITALOPS_MONITOR_EVERY"
        self.database = database
        self.settings = settings
        self.cadence = cadence
        self.lease = max(LEASE, cadence)
        self.after_run = after_run
        self.holder = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.runs = {"ok": 0, "failed": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_finished: datetime | None = None
        self._tried_tick: int | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="vitalops-monitoring-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop (between models) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.run_due(utcnow()):
                    self._follow_others()
            except Exception as exc:  # noqa: BLE001 - the database hiccupped: try again at the next tick
                log.error("monitoring schedule unavailable", extra={"error_type": type(exc).__name__})
            now = utcnow()
            next_due = tick_start(tick_of(now, self.cadence) + 1, self.cadence)
            self._stop.wait(min(max((next_due - now).total_seconds(), 0.0), _POLL_SECONDS))

    def _follow_others(self) -> None:
        """Refresh this worker's gauges when another worker finished a run since they were loaded."""
        with self.database.read_session() as session:
            row = read_schedule(session)
            finished = None if row is None or row.finished_at is None else as_utc(row.finished_at)
        if finished is not None and finished != self._seen_finished:
            self._seen_finished = finished
            if self.after_run is not None:
                self.after_run(None)

    def run_due(self, now: datetime) -> bool:
        """Run the tick ``now`` falls in if this worker claims it; True when it ran. A tick is tried
        once per worker (the claim takes the write lock), unless another worker's lease held it."""
        tick = tick_of(now, self.cadence)
        if tick == self._tried_tick:
            return False
        if not claim_tick(self.database, self.holder, tick, now=now, lease=self.lease):
            with self.database.read_session() as session:
                row = read_schedule(session)
                if row is not None and row.tick >= tick:
                    self._tried_tick = tick  # claimed by another worker: done with this tick
            return False
        self._tried_tick = tick
        self.run_once(now)
        return True

    def run_once(self, now: datetime) -> None:
        """Monitor each deployed model's pending windows and judge its rules; record how it ended."""
        from vitalops.monitoring.engine import parse_window

        window = parse_window(self.settings.monitor_window)
        models: list[str] = []
        failures = 0
        try:
            with self.database.read_session() as session:
                names = sorted(deployed_models(session))
            for name in names:
                if self._stop.is_set():
                    break
                try:
                    if self._run_model(name, window, now):
                        models.append(name)
                except Exception as exc:  # noqa: BLE001 - one model's failure must not stop the others
                    failures += 1
                    log.error("scheduled monitoring run failed",
                              extra={"model": name, "error_type": type(exc).__name__})
                _renew(self.database, self.holder, utcnow() + self.lease)
            if not self._stop.is_set():
                failures += self._run_retraining(now)
        finally:
            self.runs["failed" if failures else "ok"] += 1
            self._seen_finished = _finish(self.database, self.holder, models=len(models), failures=failures)
        if models and self.after_run is not None:
            try:
                self.after_run(models)
            except Exception as exc:  # noqa: BLE001 - gauges are refreshed again after the next run
                log.error("monitoring gauges not refreshed", extra={"error_type": type(exc).__name__})

    def _run_model(self, name: str, window: timedelta, now: datetime) -> bool:
        from vitalops.artifacts import open_store
        from vitalops.monitoring.actions import MONITORING
        from vitalops.monitoring.alerts import evaluate_after_run
        from vitalops.monitoring.engine import run_monitoring

        with self.database.read_session() as session:
            pending = pending_range(session, self.settings.lake_root, name, window, now)
        if pending is None:
            return False
        since, until = pending
        summary = run_monitoring(self.database, MONITORING, lake_root=self.settings.lake_root,
                                 store=open_store(self.settings.artifacts_root), model=name, window=window,
                                 since=since, until=until, now=now)
        evaluate_after_run(self.database, MONITORING, summary, settings=self.settings)
        log.info("scheduled monitoring run", extra={"model": name, "windows": summary["windows"],
                                                     "results": summary["results"]})
        return True

    def _run_retraining(self, now: datetime) -> int:
        """Carry out the retraining requests the alerts recorded (each failure is recorded on its
        request); 1 when the run itself could not start, else 0."""
        from vitalops.monitoring.actions import MONITORING
        from vitalops.monitoring.retraining import run_retraining

        try:
            ran = run_retraining(self.database, MONITORING, settings=self.settings, now=now)
        except Exception as exc:  # noqa: BLE001 - the next tick tries again
            log.error("scheduled retraining failed", extra={"error_type": type(exc).__name__})
            return 1
        if ran:
            log.info("scheduled retraining", extra={"requests": [r.id for r in ran],
                                                    "states": [r.state for r in ran]})
        return 0

    def state(self) -> SchedulerState:
        with self.database.read_session() as session:
            row = read_schedule(session)
            return scheduler_state(self.settings, row, cadence=self.cadence, now=utcnow())


def scheduler_state(settings: Settings, row: MonitoringScheduleRow | None, *, cadence: timedelta | None,
                    now: datetime) -> SchedulerState:
    """The state reported for a server with these settings and the schedule's shared row."""
    state = SchedulerState(enabled=cadence is not None, cadence=settings.monitor_every, window=settings.monitor_window)
    if row is not None:
        state.last_run_started_at = row.started_at and as_utc(row.started_at)
        state.last_run_finished_at = row.finished_at and as_utc(row.finished_at)
        state.last_run_status = row.status
        state.last_run_models = row.models
        state.last_run_failures = row.failures
        state.failures_total = row.failures_total
        state.running = row.state == "running" and row.lease_expires_at is not None \
            and as_utc(row.lease_expires_at) > now
    if cadence is not None:
        state.next_due_at = tick_start(tick_of(now, cadence) + 1, cadence)
    return state
