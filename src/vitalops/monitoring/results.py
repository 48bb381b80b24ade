"""The stored time series of metric results: the contract alerts, notifiers and dashboards read.

One row per (metric id, model, version, site, window start, window end), written by ``upsert``:
computing a window again replaces its values, so a rerun adds nothing. ``read_results`` is the
read side: a model's series, filtered by metric (an exact id, or a family for all of its features),
site and time, oldest window first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field
from sqlalchemy import and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import as_utc
from vitalops.db import Database
from vitalops.db.tables.monitoring import MonitoringResultRow
from vitalops.db.tables.registry import ModelRow
from vitalops.errors import NotFound
from vitalops.monitoring.metrics import METRICS, get_metric

Status = Literal["ok", "insufficient_data", "flagged"]
#: Rows one read returns at most.
READ_LIMIT = 10_000


class MetricResult(BaseModel):
    """One value of one metric (``value`` is None when the data cannot give one)."""

    metric_id: str
    model: str
    version: int
    site: str
    window_start: datetime
    window_end: datetime
    value: float | None
    n: int
    status: Status
    details: dict[str, Any] = Field(default_factory=dict)
    computed_at: datetime | None = None

    def key(self) -> tuple[str, str, int, str, datetime, datetime]:
        return (self.metric_id, self.model, self.version, self.site, as_utc(self.window_start),
                as_utc(self.window_end))


def _from_row(row: MonitoringResultRow) -> MetricResult:
    return MetricResult(metric_id=row.metric_id, model=row.model, version=row.version, site=row.site,
                        window_start=row.window_start, window_end=row.window_end, value=row.value, n=row.n,
                        status=row.status, details=orjson.loads(row.details_json),  # type: ignore[arg-type]
                        computed_at=row.computed_at)


_NATURAL_KEY = ("metric_id", "model", "version", "site", "window_start", "window_end")
_VALUES = ("value", "n", "status", "details_json", "computed_at", "run_id")
#: Rows per executemany batch.
_UPSERT_ROWS = 500


def upsert(session: Session, results: list[MetricResult], *, run_id: str, computed_at: datetime) -> dict[str, int]:
    """Write ``results`` in the caller's transaction, replacing any row with the same natural key
    (``INSERT ... ON CONFLICT DO UPDATE``, so two runs of the same window at once cannot both
    insert); returns how many were new and how many replaced a row (values changed or not)."""
    if not results:
        return {"inserted": 0, "replaced": 0}
    existing = {
        (row.metric_id, row.model, row.version, row.site, row.window_start, row.window_end)
        for row in session.execute(select(*(getattr(MonitoringResultRow, c) for c in _NATURAL_KEY)).where(
            MonitoringResultRow.model.in_({r.model for r in results}),
            MonitoringResultRow.window_start.in_({as_utc(r.window_start) for r in results}),
            MonitoringResultRow.site.in_({r.site for r in results}),
        ))
    }
    rows = [{"metric_id": r.metric_id, "model": r.model, "version": r.version, "site": r.site,
             "window_start": as_utc(r.window_start), "window_end": as_utc(r.window_end), "value": r.value, "n": r.n,
             "status": r.status, "details_json": orjson.dumps(r.details, option=orjson.OPT_SORT_KEYS).decode(),
             "computed_at": computed_at, "run_id": run_id} for r in results]
    dialect: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(MonitoringResultRow)
    statement = statement.on_conflict_do_update(index_elements=list(_NATURAL_KEY),
                                                set_={c: statement.excluded[c] for c in _VALUES})
    for chunk in range(0, len(rows), _UPSERT_ROWS):  # one statement compiled once, its rows as parameters
        session.execute(statement, rows[chunk:chunk + _UPSERT_ROWS])
    replaced = sum(r.key() in existing for r in results)
    return {"inserted": len(results) - replaced, "replaced": replaced}


def read_results(
    session: Session,
    *,
    model: str,
    metric_id: str | None = None,
    site: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
    status: Status | None = None,
    limit: int = READ_LIMIT,
) -> list[MetricResult]:
    """A model's results, oldest window first. ``metric_id`` is an exact id or a family (every
    feature's or concept's id of it); ``since``/``until`` bound the window start. Raises InvalidInput
    for an unknown metric."""
    query = _filtered(select(MonitoringResultRow), model, metric_id, site)
    if since is not None:
        query = query.where(MonitoringResultRow.window_start >= as_utc(since))
    if until is not None:
        query = query.where(MonitoringResultRow.window_start < as_utc(until))
    if version is not None:
        query = query.where(MonitoringResultRow.version == version)
    if status is not None:
        query = query.where(MonitoringResultRow.status == status)
    query = query.order_by(MonitoringResultRow.window_start, MonitoringResultRow.metric_id,
                           MonitoringResultRow.version, MonitoringResultRow.site).limit(max(1, min(limit, READ_LIMIT)))
    return [_from_row(row) for row in session.scalars(query)]


def _filtered(query: Any, model: str, metric_id: str | None, site: str | None) -> Any:
    query = query.where(MonitoringResultRow.model == model)
    if metric_id is not None:
        family, slash, _ = metric_id.partition("/")
        definition = METRICS.get(family)
        if definition is not None and not slash and definition.per is not None:
            # a family measured per feature or concept, named alone: every id of it
            query = query.where(MonitoringResultRow.metric_id.startswith(f"{family}/", autoescape=True))
        else:
            get_metric(metric_id)  # InvalidInput for an unknown id
            query = query.where(MonitoringResultRow.metric_id == metric_id)
    if site is not None:
        query = query.where(MonitoringResultRow.site == site)
    return query


def latest_results(session: Session, *, model: str, metric_id: str | None = None,
                   site: str | None = None) -> list[MetricResult]:
    """The newest window's result of each (metric, version, site) of ``model``, by metric id."""
    newest = _filtered(
        select(MonitoringResultRow.metric_id, MonitoringResultRow.version, MonitoringResultRow.site,
               func.max(MonitoringResultRow.window_start).label("window_start")),
        model, metric_id, site,
    ).group_by(MonitoringResultRow.metric_id, MonitoringResultRow.version, MonitoringResultRow.site).subquery()
    query = select(MonitoringResultRow).join(newest, and_(
        MonitoringResultRow.metric_id == newest.c.metric_id, MonitoringResultRow.version == newest.c.version,
        MonitoringResultRow.site == newest.c.site, MonitoringResultRow.window_start == newest.c.window_start,
    )).where(MonitoringResultRow.model == model).order_by(
        MonitoringResultRow.metric_id, MonitoringResultRow.version, MonitoringResultRow.site,
        MonitoringResultRow.window_end.desc())
    latest: dict[tuple[str, int, str], MetricResult] = {}
    for row in session.scalars(query):
        latest.setdefault((row.metric_id, row.version, row.site), _from_row(row))
    return list(latest.values())


def query_results(
    database: Database,
    actor: Principal,
    *,
    model: str,
    metric_id: str | None = None,
    site: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    latest: bool = False,
    limit: int = READ_LIMIT,
) -> list[MetricResult]:
    """``read_results`` (or, with ``latest``, ``latest_results``) for a principal: needs
    ``monitoring:read``; NotFound for an unknown model, InvalidInput for an unknown metric."""
    authorize(database, actor, Permission.MONITORING_READ, object_type="model", object_id=model)
    with database.read_session() as session:
        if session.scalar(select(ModelRow.id).where(ModelRow.name == model)) is None:
            raise NotFound(f"no model '{model}'", details={"field": "model"})
        if latest:
            return latest_results(session, model=model, metric_id=metric_id, site=site)
        return read_results(session, model=model, metric_id=metric_id, site=site, since=since, until=until,
                            limit=limit)
