"""Operations and workflow metrics on known data: alerts per 100 patient-days, minutes from a card
to the clinician's first feedback, and the review queue at each window's end, each equal to the
count made directly; below their minimums they are insufficient data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.monitoring.conftest import CLINICIAN, DAY0, MODEL, NUMERIC, OPERATOR
from vitalops.artifacts import open_store
from vitalops.auth import Principal, Role
from vitalops.cdshooks.cards import card_uuid
from vitalops.cdshooks.clients import EhrClient
from vitalops.cdshooks.service import CdsHooks
from vitalops.cdshooks.trust import VerifiedCall
from vitalops.monitoring.engine import parse_window, run_monitoring
from vitalops.monitoring.operations import OperationsCounts, review_queue_metrics
from vitalops.monitoring.results import read_results
from vitalops.review import queue as review_queue
from vitalops.review.rules import ReviewReason
from vitalops.serving import PredictionRequest, predict

OVERRIDE_SYSTEM = "https://vitalops.example/override"
EHR = Principal(name="ehr-north", roles=frozenset({Role.EHR}))


def _features(names, high: bool) -> dict[str, float | None]:
    base: dict[str, float | None] = {name: float(NUMERIC.get(name, (0.0, 0))[0]) for name in names}
    base.update({"heart_rate_last": 150.0 if high else 70.0, "creatinine_last": 8.0 if high else 0.8,
                 "age": 90.0 if high else 40.0, "sepsis_7d": 1.0 if high else 0.0, "lactate_last": None})
    return base


def _run(monitored, window="1d", now=DAY0 + timedelta(days=1, hours=1)):
    run_monitoring(monitored.database, OPERATOR, lake_root=monitored.lake_root,
                   store=open_store(monitored.settings.artifacts_root), model=MODEL, window=parse_window(window),
                   now=now)


def _series(monitored, metric_id, site="north"):
    with monitored.database.session() as session:
        return read_results(session, model=MODEL, metric_id=metric_id, site=site)


def test_alerts_per_100_patient_days_is_flags_over_distinct_patient_days(monitored):
    made = []
    for patient in range(12):  # each scored three times in the day; patients 0-3 flagged each time
        for hour in (1, 9, 17):
            outcome = predict(monitored.database, monitored.context, CLINICIAN, MODEL, PredictionRequest(
                site="north", features=_features(monitored.feature_names, patient < 4),
                patient_key=f"k{patient:063d}", at=DAY0 + timedelta(hours=hour, minutes=patient)))
            made.append(outcome.prediction)
    flagged = sum(p.decision for p in made)
    assert flagged == 12  # the high-risk rows, and only they, are over the threshold
    predict(monitored.database, monitored.context, CLINICIAN, MODEL, PredictionRequest(
        site="south", features=_features(monitored.feature_names, True), patient_key="s" * 64,
        at=DAY0 + timedelta(hours=3)))
    _run(monitored)
    _run(monitored, window="6h")
    by_window = {(r.window_end - r.window_start, r.window_start): r
                 for r in _series(monitored, "ops.alerts_per_100_patient_days")}
    day = by_window[(timedelta(days=1), DAY0)]
    assert day.n == 12 and day.value == pytest.approx(100 * flagged / 12)
    assert day.details["alerts"] == 12 and day.details["patient_days"] == 12
    # 06:00-12:00: the twelve patients' 09:00 scores, each a quarter of a patient-day
    quarter = by_window[(timedelta(hours=6), DAY0 + timedelta(hours=6))]
    assert quarter.n == 12 and quarter.value == pytest.approx(100 * 4 / (12 * 0.25))
    south = _series(monitored, "ops.alerts_per_100_patient_days", site="south")
    assert south[0].status == "insufficient_data" and south[0].value is None and south[0].n == 1


def test_card_to_action_is_the_first_feedback_time_minus_the_prediction_time(monitored):
    at = DAY0 + timedelta(hours=8)
    predictions = [predict(monitored.database, monitored.context, CLINICIAN, MODEL, PredictionRequest(
        site="north", features=_features(monitored.feature_names, True), patient_key=f"c{i:063d}",
        at=at + timedelta(minutes=i))).prediction for i in range(24)]
    client = EhrClient(issuer="https://ehr.example.org", site="north", account="ehr-north", jwks=None, jku_allow=(),
                       created_at=DAY0, revoked=False)
    service = CdsHooks(monitored.database, monitored.context)
    waits = []
    for i, prediction in enumerate(predictions):
        wait = 3 + 2 * i  # minutes to the first action; a later second item on the card does not count
        waits.append(wait)
        first = prediction.at + timedelta(minutes=wait)
        items = [{"card": card_uuid(prediction.id), "outcome": "accepted", "outcomeTimestamp": first.isoformat()},
                 {"card": card_uuid(prediction.id), "outcome": "overridden",
                  "overrideReason": {"reason": {"system": OVERRIDE_SYSTEM, "code": "other", "display": "Other"}},
                  "outcomeTimestamp": (first + timedelta(hours=5)).isoformat()}]
        service.feedback(VerifiedCall(client, EHR, {}), MODEL, {"feedback": items})
    _run(monitored)
    p50, p90 = (_series(monitored, f"workflow.card_to_action_minutes.{q}")[0] for q in ("p50", "p90"))
    assert p50.n == p90.n == 24
    assert p50.value == pytest.approx(float(np.quantile(waits, 0.5)))
    assert p90.value == pytest.approx(float(np.quantile(waits, 0.9)))


def test_card_to_action_below_twenty_cards_is_insufficient(monitored):
    monitored.predict_online("north", DAY0 + timedelta(hours=2), 5)
    _run(monitored)
    p50 = _series(monitored, "workflow.card_to_action_minutes.p50")[0]
    assert p50.status == "insufficient_data" and p50.value is None and p50.n == 0


def test_the_review_queue_at_each_windows_end(monitored, monkeypatch):
    logged = [predict(monitored.database, monitored.context, CLINICIAN, MODEL, PredictionRequest(
        site="north", features=_features(monitored.feature_names, False), patient_key=f"r{i:063d}",
        at=DAY0 + timedelta(hours=1, minutes=i))).prediction for i in range(4)]
    clock = {"now": DAY0}
    monkeypatch.setattr(review_queue, "utcnow", lambda: clock["now"])  # the queue's clock, set to the story's times
    reason = [ReviewReason("uncertain", "near the threshold")]
    ids = []
    for hours, prediction in zip((2, 5, 30, 40), logged, strict=True):
        clock["now"] = DAY0 + timedelta(hours=hours)
        with monitored.database.session() as session:
            ids.append(review_queue.enqueue(session, CLINICIAN, prediction, reason))
    clock["now"] = DAY0 + timedelta(hours=20)
    with monitored.database.session() as session:
        review_queue.decide(session, CLINICIAN, ids[0], "accept", "agreed")
    _run(monitored, now=DAY0 + timedelta(days=2, hours=1))
    size = {r.window_start: r for r in _series(monitored, "workflow.review_queue_size")}
    age = {r.window_start: r for r in _series(monitored, "workflow.review_queue_age_hours")}
    # day 0 ends at 24:00: the item from 02:00 was decided at 20:00, the one from 05:00 is pending
    assert size[DAY0].value == 1 and size[DAY0].version == 0
    assert age[DAY0].value == pytest.approx(24 - 5)
    # day 1 ends at 48:00: the 05:00, 30:00 and 40:00 items pending; the oldest waited 43 hours
    assert size[DAY0 + timedelta(days=1)].value == 3
    assert age[DAY0 + timedelta(days=1)].value == pytest.approx(48 - 5)
    assert age[DAY0 + timedelta(days=1)].details["median_hours"] == pytest.approx(48 - 30)


def test_an_empty_queue_has_no_age():
    written = {}
    review_queue_metrics(lambda metric_id, *rest: written.__setitem__(metric_id, rest), OperationsCounts(), "north",
                         int(datetime(2026, 3, 3, tzinfo=UTC).timestamp() * 1e6))
    assert written["workflow.review_queue_size"][2:5] == (0.0, 0, "ok")
    assert written["workflow.review_queue_age_hours"][2:5] == (None, 0, "insufficient_data")
