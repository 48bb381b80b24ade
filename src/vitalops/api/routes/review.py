"""``/v1/review``: the human-review queue for clinicians; queue size and age in ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from vitalops.api.deps import DatabaseDep, require
from vitalops.auth import Permission, Principal
from vitalops.db import Database
from vitalops.review import decide, list_items, queue_stats

router = APIRouter(prefix="/v1/review", tags=["review"])
Reviewer = Annotated[Principal, Depends(require(Permission.REVIEW_DECIDE))]


class DecisionBody(BaseModel):
    decision: Literal["accept", "override"]
    reason: str = Field(min_length=1, max_length=2000)


@router.get("")
def get_review_queue(database: DatabaseDep, actor: Reviewer, state: str | None = "pending",
                     site: str | None = None, limit: Annotated[int, Field(ge=1, le=500)] = 100) -> dict[str, Any]:
    """Queued predictions, oldest first, with why each was queued (pseudonymous patient keys only)."""
    with database.read_session() as session:
        return {"items": [item.to_dict() for item in list_items(session, state=state, site=site, limit=limit)]}


@router.post("/{item_id}/decision")
def post_decision(item_id: int, body: DecisionBody, database: DatabaseDep, actor: Reviewer) -> dict[str, Any]:
    """Accept or override a queued prediction with a reason (audited, joined to the prediction)."""
    with database.session() as session:
        return decide(session, actor, item_id, body.decision, body.reason).to_dict()


class ReviewQueueCollector(Collector):
    """Pending review items and the oldest one's age, read from the database at each scrape."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.database.read_session() as session:
                size, age = queue_stats(session)
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database hiccupped
            return
        yield GaugeMetricFamily("vitalops_review_queue_size", "Predictions waiting for clinician review", size)
        yield GaugeMetricFamily("vitalops_review_queue_oldest_age_seconds",
                                "Age of the oldest prediction waiting for review", age)


def install_review_metrics(app: FastAPI, database: Database) -> None:
    app.state.metrics.registry.register(ReviewQueueCollector(database))
