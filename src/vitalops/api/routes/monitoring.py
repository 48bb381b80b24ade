"""``/v1/monitoring``: the stored time series of metric results, runs of the engine, and the state of
the scheduler; the latest value of each metric in ``/metrics``. Thin."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, status
from pydantic import BaseModel, Field

from vitalops.api.deps import DatabaseDep, PrincipalDep, SettingsDep, require
from vitalops.api.params import Moment, MomentQuery, Name, NameQuery
from vitalops.auth import Permission, Principal
from vitalops.core.settings import Settings
from vitalops.db import Database

log = logging.getLogger("vitalops.api.monitoring")
router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"])
Reader = Annotated[Principal, Depends(require(Permission.MONITORING_READ))]
#: Metric ids: a family and an optional feature or concept after a slash.
MetricQuery = Annotated[str | None, Query(min_length=1, max_length=240, pattern=r"^[A-Za-z0-9_.\-/]+$")]


class RunBody(BaseModel):
    model: Name | None = None
    site: Name | None = None
    window: str = Field(default="1d", pattern=r"^[0-9]{1,3}[hd]$")
    since: Moment | None = None
    until: Moment | None = None


@router.get("/results")
def get_results(
    database: DatabaseDep, actor: Reader, model: Annotated[Name, Query()], metric: MetricQuery = None,
    site: NameQuery = None, since: MomentQuery = None, until: MomentQuery = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """A model's results, oldest window first: ``metric`` is an id or a family (all of its features)."""
    from vitalops.monitoring.results import query_results

    results = query_results(database, actor, model=model, metric_id=metric, site=site, since=since, until=until,
                            limit=limit)
    return {"model": model, "results": [r.model_dump(mode="json") for r in results]}


@router.get("/scheduler")
def get_scheduler(database: DatabaseDep, settings: SettingsDep, _: Reader) -> dict[str, Any]:
    """Whether this server runs monitoring on a cadence, and the last scheduled run of any worker."""
    from vitalops.core.clock import utcnow
    from vitalops.monitoring.scheduler import read_schedule, scheduler_state

    with database.read_session() as session:
        row = read_schedule(session)
        state = scheduler_state(settings, row, cadence=settings.monitor_cadence, now=utcnow())
    return state.model_dump(mode="json")


@router.get("/retraining")
def get_retraining(
    database: DatabaseDep, actor: Reader, model: NameQuery = None,
    state: Annotated[str | None, Query(max_length=16, pattern=r"^[a-z_]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Retraining requests, newest first: each one's stable id, base version, site, state, candidate,
    PCCP check and outcome (the shadow period's end, or the failed criteria)."""
    from vitalops.monitoring.retraining_requests import list_retraining_requests

    requests = list_retraining_requests(database, actor, model=model, state=state, limit=limit)
    return {"requests": [r.model_dump(mode="json") for r in requests]}


@router.get("/retraining/{request_id}")
def get_retraining_request(
    request_id: Annotated[int, Path(ge=1, le=2_147_483_647)], database: DatabaseDep, actor: Reader,
) -> dict[str, Any]:
    """One retraining request."""
    from vitalops.monitoring.retraining_requests import get_retraining_request as get_request

    return get_request(database, actor, request_id).model_dump(mode="json")


@router.post("/runs", status_code=status.HTTP_201_CREATED)
def post_run(body: RunBody, request: Request, database: DatabaseDep, settings: SettingsDep,
             actor: PrincipalDep) -> dict[str, Any]:
    """Compute every metric for each complete window in the range (needs ``monitoring:run``), then
    judge each computed model's alert rules (``alerts``: each model's evaluation)."""
    from vitalops.artifacts import open_store
    from vitalops.monitoring.alerts import evaluate_after_run
    from vitalops.monitoring.engine import parse_window, run_monitoring

    summary = run_monitoring(database, actor, lake_root=settings.lake_root, store=open_store(settings.artifacts_root),
                             model=body.model, site=body.site, window=parse_window(body.window), since=body.since,
                             until=body.until)
    evaluations = evaluate_after_run(database, actor, summary, settings=settings)
    _refresh_gauges(request.app, [computed["model"] for computed in summary["models"]])
    return {**summary, "alerts": evaluations}


def _refresh_gauges(app: FastAPI, models: list[str] | None) -> None:
    try:
        app.state.monitoring_gauges.refresh(models)
    except Exception as exc:  # noqa: BLE001 - the run is committed; the gauges catch up at the next one
        log.error("monitoring gauges not refreshed", extra={"error_type": type(exc).__name__})


def install_monitoring(app: FastAPI, settings: Settings, database: Database) -> None:
    """Register the gauges of the latest metric values; the scheduler starts with the lifespan."""
    from vitalops.monitoring.gauges import MonitoringGauges

    app.state.monitoring_gauges = MonitoringGauges(database)
    app.state.metrics.registry.register(app.state.monitoring_gauges)
    app.state.monitoring_scheduler = None


async def start_monitoring(app: FastAPI, settings: Settings, database: Database) -> None:
    """Load the gauges from the stored results, and start the scheduler when a cadence is set."""
    await asyncio.to_thread(_refresh_gauges, app, None)
    if settings.monitor_cadence is not None:
        from vitalops.monitoring.scheduler import MonitoringScheduler

        scheduler = MonitoringScheduler(database, settings, after_run=lambda models: _refresh_gauges(app, models))
        scheduler.start()
        app.state.monitoring_scheduler = scheduler


async def stop_monitoring(app: FastAPI) -> None:
    """Stop the scheduler between models and wait for it."""
    scheduler = app.state.monitoring_scheduler
    if scheduler is not None:
        await asyncio.to_thread(scheduler.stop)
        app.state.monitoring_scheduler = None
