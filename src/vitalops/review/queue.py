"""The human-review queue: uncertain predictions held for a clinician's decision.

An item's lifecycle is one transition table (``TRANSITIONS``): ``pending`` to ``accepted`` (the
clinician agrees with the model) or ``overridden`` (they do not, with a reason); decided items are
final, and an illegal move raises Conflict. Every enqueue and decision is audited with the
prediction's id, so the trail joins a decision to the prediction it judged.

A reviewer sees the prediction as the log holds it: the pseudonymous patient key, the score, the
band, the reasons and the factors with their values; never an MRN or a name (the codebook is a
separate, audited permission).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Principal
from vitalops.core.clock import as_utc, utcnow
from vitalops.db import Database
from vitalops.db.tables.cdshooks import ReviewItemRow
from vitalops.db.tables.serving import PredictionRow
from vitalops.errors import Conflict, InvalidInput, NotFound
from vitalops.review.rules import ReviewPolicy, ReviewReason, reasons_for
from vitalops.serving import Prediction

PENDING = "pending"
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({"accepted", "overridden"}),
    "accepted": frozenset(),
    "overridden": frozenset(),
}
DECISIONS = {"accept": "accepted", "override": "overridden"}


@dataclass(frozen=True)
class ReviewItem:
    id: int
    prediction_id: str
    model: str
    site: str
    patient_key: str | None
    score: float
    threshold: float
    band: str
    reasons: list[dict[str, str]]
    factors: list[dict[str, Any]]
    state: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def enqueue(session: Session, actor: Principal, prediction: Prediction, reasons: list[ReviewReason]) -> int:
    """Queue a logged prediction for review (audited); the same prediction again is a no-op. Returns the item id."""
    existing = session.scalar(select(ReviewItemRow.id).where(ReviewItemRow.prediction_id == prediction.id))
    if existing is not None:
        return existing
    row = ReviewItemRow(prediction_id=prediction.id, model=prediction.model, site=prediction.site,
                        reasons_json=orjson.dumps([r.to_dict() for r in reasons]).decode(), state=PENDING,
                        created_at=utcnow())
    session.add(row)
    session.flush()
    append(session, actor=actor, action="review.queued", object_type="prediction", object_id=prediction.id,
           payload={"item": row.id, "rules": [r.rule for r in reasons]})
    return row.id


def review_if_needed(database: Database, actor: Principal, prediction: Prediction,
                     policy: ReviewPolicy) -> list[ReviewReason]:
    """Queue ``prediction`` (already logged) when any rule of ``policy`` holds; the rules it met."""
    reasons = reasons_for(prediction, policy)
    if reasons:
        with database.session() as session:
            enqueue(session, actor, prediction, reasons)
    return reasons


def _item(row: ReviewItemRow, prediction: PredictionRow) -> ReviewItem:
    explanation = orjson.loads(prediction.explanation_json)
    return ReviewItem(row.id, row.prediction_id, row.model, row.site, prediction.patient_key, prediction.score,
                      prediction.threshold, prediction.band, orjson.loads(row.reasons_json),
                      explanation.get("factors", [])[:5], row.state, row.created_at, row.decided_at, row.decided_by,
                      row.decision_reason)


def list_items(session: Session, *, state: str | None = PENDING, site: str | None = None,
               limit: int = 100) -> list[ReviewItem]:
    """Queue items, oldest first (``state`` None: every state)."""
    if state is not None and state not in TRANSITIONS:
        raise InvalidInput(f"state '{state}' is not one of {', '.join(TRANSITIONS)}", details={"field": "state"})
    query = (select(ReviewItemRow, PredictionRow).join(PredictionRow, PredictionRow.id == ReviewItemRow.prediction_id)
             .order_by(ReviewItemRow.id).limit(limit))
    if state is not None:
        query = query.where(ReviewItemRow.state == state)
    if site is not None:
        query = query.where(ReviewItemRow.site == site)
    return [_item(row, prediction) for row, prediction in session.execute(query)]


def decide(session: Session, actor: Principal, item_id: int, decision: str, reason: str) -> ReviewItem:
    """Record a clinician's decision on item ``item_id`` (``accept`` or ``override``, with a reason);
    audited with the prediction id. NotFound, InvalidInput for a bad decision or empty reason, Conflict
    when the item is decided already. The caller checks ``review:decide``."""
    target = DECISIONS.get(decision)
    if target is None:
        raise InvalidInput("decide 'accept' or 'override'", details={"field": "decision"})
    if not reason.strip():
        raise InvalidInput("a decision needs a reason", details={"field": "reason"})
    row = session.scalar(select(ReviewItemRow).where(ReviewItemRow.id == item_id).with_for_update())
    if row is None:
        raise NotFound(f"no review item {item_id}")
    if not can_transition(row.state, target):
        raise Conflict(f"review item {item_id} is {row.state}; it cannot become {target}")
    row.state, row.decided_at, row.decided_by, row.decision_reason = target, utcnow(), actor.name, reason.strip()
    append(session, actor=actor, action="review.decided", object_type="prediction", object_id=row.prediction_id,
           payload={"item": row.id, "decision": target, "reason": reason.strip()})
    return _item(row, session.get_one(PredictionRow, row.prediction_id))


def queue_stats(session: Session) -> tuple[int, float]:
    """The number of pending items and the age in seconds of the oldest (0 when empty)."""
    count, oldest = session.execute(select(func.count(ReviewItemRow.id), func.min(ReviewItemRow.created_at))
                                    .where(ReviewItemRow.state == PENDING)).one()
    if not count or oldest is None:
        return 0, 0.0
    return int(count), max(0.0, (utcnow() - as_utc(oldest)).total_seconds())
