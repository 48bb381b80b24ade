"""``/v1/monitoring``: the stored time series of metric results, and runs of the engine. Thin."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, Field

from vitalops.api.deps import DatabaseDep, PrincipalDep, SettingsDep, require
from vitalops.api.params import Moment, MomentQuery, Name, NameQuery
from vitalops.auth import Permission, Principal

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


@router.post("/runs", status_code=status.HTTP_201_CREATED)
def post_run(body: RunBody, database: DatabaseDep, settings: SettingsDep, actor: PrincipalDep) -> dict[str, Any]:
    """Compute every metric for each complete window in the range (needs ``monitoring:run``), then
    judge each computed model's alert rules (``alerts``: each model's evaluation)."""
    from vitalops.artifacts import open_store
    from vitalops.monitoring.alerts import evaluate_after_run
    from vitalops.monitoring.engine import parse_window, run_monitoring

    summary = run_monitoring(database, actor, lake_root=settings.lake_root, store=open_store(settings.artifacts_root),
                             model=body.model, site=body.site, window=parse_window(body.window), since=body.since,
                             until=body.until)
    return {**summary, "alerts": evaluate_after_run(database, actor, summary, settings=settings)}
