"""Operations and workflow metrics beside latency and volume: alerts per 100 patient-days, time from
a card to the clinician's action, and the review queue's size and age.

- **Alerts per 100 patient-days**: flagged predictions (the logged decision) of the version at the
  site in the window, times 100, over its patient-days. A patient-day is a distinct (patient key,
  UTC day) pair among the version's predictions in the window, so a patient scored hourly counts
  one patient-day a day while each flagged score counts as an alert (each is a card or a worklist
  entry shown); a window shorter than a day weights each pair by its share of a day. A prediction
  without a patient key stands for its own patient. A shadow's value is what it would have shown.
- **Card to action**: per card (CDS Hooks ``card_uuid``), its earliest feedback time minus the
  time of the prediction it showed, in minutes; the median and the 90th percentile (linear
  interpolation) over the cards of the window's predictions.
- **Review queue**: items of the model at the site pending at the window's end (created before
  it, not decided by then), and how long the oldest of them had waited. The queue is the model's
  at the site, so these are stored as version 0.

- **Error rates**: failed prediction requests (``serving.failures``: counted per hour, model,
  version, site and error code once the request reached a known model, or a CDS Hooks call of a
  model's service failed outside scoring, as version 0) over the requests, that is
  the online predictions logged (rows with a latency; batch rows are a job's, not requests) plus
  the failures. ``ops.error_rate`` counts the failures answered 5xx (the service's fault),
  ``ops.input_error_rate`` those answered 4xx (the request's). Per version: the failures while that
  version was scoring (a shadow's own included) over its online predictions and failures. Version 0
  is the model at the site: every failure, including those before a version was chosen (an unknown
  patient key, no champion at the site), over every online prediction and failure. A window holds
  the hours that start in it, and a failure is dated by the request's ``at``, as its prediction
  would have been.

Patient keys are read here only to count distinct patients; results hold counts and times.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vitalops.core.clock import as_utc
from vitalops.db.tables.cdshooks import CardFeedbackRow, ReviewItemRow
from vitalops.db.tables.registry import ModelRow
from vitalops.db.tables.serving import ServingErrorCountRow
from vitalops.monitoring import aggregates as agg
from vitalops.monitoring.stats import VITALOPS_P

DAY_US = 86_400_000_000
_CHUNK = 5000
#: Server errors a model may answer before ``ops.error_rate`` is flagged: a 99% success objective for
#: its requests (our default; an alert rule sets an installation's own), judged by the one-sided exact
#: binomial test against it so that a handful of failures in a small window does not flag.
ERROR_RATE_MAX = 0.01


@dataclass
class OperationsCounts:
    """Per (version, site, window): alerts and patient-days, and minutes from card to action; per
    site, each review item's (created, decided) times in us (decided None while pending)."""

    alerts: dict[agg.Key, int] = field(default_factory=dict)
    patient_days: dict[agg.Key, tuple[int, float]] = field(default_factory=dict)
    card_minutes: dict[agg.Key, list[float]] = field(default_factory=dict)
    review_items: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)
    #: Per (version, site, window) and (0, site, window) for the model at the site: online predictions
    #: logged, and failures by (error code, HTTP status).
    online: dict[agg.Key, int] = field(default_factory=dict)
    failures: dict[agg.Key, dict[tuple[str, int], int]] = field(default_factory=dict)


def operations_counts(session: Session, model: str, predictions: pa.Table, window_us: int, start: datetime,
                      end: datetime, *, site: str | None = None) -> OperationsCounts:
    """The counts of ``predictions`` (``PREDICTION_COLUMNS``), the model's review items that were
    pending at some moment of ``[start, end)``, and its failed requests in it (at ``site``)."""
    result = OperationsCounts()
    _review_items(session, model, start, end, result)
    _failures(session, model, start, end, site, window_us, result)
    if predictions.num_rows == 0:
        return result
    ids = predictions["prediction_id"].to_pylist()
    at = pc.cast(predictions["at"], pa.int64()).to_numpy(zero_copy_only=False)
    keys = [(int(v), str(s), int(t) // window_us * window_us) for v, s, t in zip(
        predictions["version"].to_pylist(), predictions["site"].to_pylist(), at, strict=True)]
    online: dict[agg.Key, int] = defaultdict(int)
    for key, latency in zip(keys, predictions["latency_ms"].to_pylist(), strict=True):
        if latency is not None:
            online[key] += 1
            online[(0, key[1], key[2])] += 1
    result.online = dict(online)
    pairs: dict[agg.Key, set[tuple[str, int]]] = defaultdict(set)
    alerts: dict[agg.Key, int] = defaultdict(int)
    for key, prediction_id, patient_key, moment, flagged in zip(
            keys, ids, predictions["patient_key"].to_pylist(), at, predictions["decision"].to_pylist(), strict=True):
        pairs[key].add((patient_key or prediction_id, int(moment) // DAY_US))
        alerts[key] += bool(flagged)
    weight = min(window_us, DAY_US) / DAY_US
    result.alerts = dict(alerts)
    result.patient_days = {key: (len(found), len(found) * weight) for key, found in pairs.items()}
    made = {prediction_id: (key, int(moment)) for prediction_id, key, moment in zip(ids, keys, at, strict=True)}
    first: dict[str, tuple[str, int]] = {}
    for chunk in range(0, len(ids), _CHUNK):
        for card, prediction_id, outcome_at in session.execute(
                select(CardFeedbackRow.card_uuid, CardFeedbackRow.prediction_id, CardFeedbackRow.outcome_at)
                .where(CardFeedbackRow.prediction_id.in_(ids[chunk:chunk + _CHUNK]))).all():
            moment = agg.epoch_us(outcome_at)
            if card not in first or moment < first[card][1]:
                first[card] = (prediction_id, moment)
    minutes: dict[agg.Key, list[float]] = defaultdict(list)
    for prediction_id, acted in first.values():
        key, shown = made[prediction_id]
        minutes[key].append((acted - shown) / 60_000_000)
    result.card_minutes = dict(minutes)
    return result


def _review_items(session: Session, model: str, start: datetime, end: datetime, result: OperationsCounts) -> None:
    rows = session.execute(select(ReviewItemRow.site, ReviewItemRow.created_at, ReviewItemRow.decided_at).where(
        ReviewItemRow.model == model, ReviewItemRow.created_at < as_utc(end),
        or_(ReviewItemRow.decided_at.is_(None), ReviewItemRow.decided_at >= as_utc(start)))).all()
    items: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    for site, created, decided in rows:
        items[str(site)].append((agg.epoch_us(created), None if decided is None else agg.epoch_us(decided)))
    result.review_items = dict(items)


def _failures(session: Session, model: str, start: datetime, end: datetime, site: str | None, window_us: int,
              result: OperationsCounts) -> None:
    query = select(ServingErrorCountRow.version, ServingErrorCountRow.site, ServingErrorCountRow.hour_start,
                   ServingErrorCountRow.code, ServingErrorCountRow.http_status, ServingErrorCountRow.count).join(
        ModelRow, ModelRow.id == ServingErrorCountRow.model_id).where(
        ModelRow.name == model, ServingErrorCountRow.hour_start >= as_utc(start),
        ServingErrorCountRow.hour_start < as_utc(end))
    if site is not None:
        query = query.where(ServingErrorCountRow.site == site)
    failures: dict[agg.Key, dict[tuple[str, int], int]] = defaultdict(lambda: defaultdict(int))
    for version, at_site, hour, code, status, count in session.execute(query).all():
        window = agg.epoch_us(hour) // window_us * window_us
        for key in {(0, str(at_site), window), (int(version), str(at_site), window)}:
            failures[key][(str(code), int(status))] += int(count)
    result.failures = {key: dict(by_code) for key, by_code in failures.items()}


def error_rate_metrics(add: Callable[..., None], counts: OperationsCounts, window_start: int) -> None:
    """``ops.error_rate`` and ``ops.input_error_rate`` of each version, and of the model (version 0),
    at each site with online predictions or failures in the window starting at ``window_start``."""
    from scipy.stats import binomtest

    for key in sorted({key for key in (*counts.online, *counts.failures) if key[2] == window_start}):
        version, site, _ = key
        failed = counts.failures.get(key, {})
        server = sum(n for (_, status), n in failed.items() if status >= 500)
        refused = sum(n for (_, status), n in failed.items() if status < 500)
        online = counts.online.get(key, 0)
        requests = online + server + refused
        details = {"online_predictions": online, "server_errors": server, "input_errors": refused,
                   "errors_by_code": {code: n for (code, _), n in sorted(failed.items())}}
        p = float(binomtest(server, requests, ERROR_RATE_MAX, alternative="greater").pvalue)
        rate = server / requests
        add("ops.error_rate", version, site, rate, requests,
            "flagged" if rate >= ERROR_RATE_MAX and p < VITALOPS_P else "ok",
            {**details, "threshold": ERROR_RATE_MAX, "binomial_pvalue": p})
        add("ops.input_error_rate", version, site, refused / requests, requests, "ok", details)


def operations_metrics(add: Callable[..., None], counts: OperationsCounts, key: agg.Key) -> None:
    """Alerts per 100 patient-days and card-to-action quantiles of ``key`` through ``add``."""
    version, site, _ = key
    pairs, patient_days = counts.patient_days.get(key, (0, 0.0))
    alerts = counts.alerts.get(key, 0)
    add("ops.alerts_per_100_patient_days", version, site, 100 * alerts / patient_days if patient_days else None,
        pairs, "ok", {"alerts": alerts, "patient_days": patient_days,
                      "patient_days_from": "distinct (patient key, UTC day) pairs among the version's predictions"})
    minutes = np.asarray(counts.card_minutes.get(key, []), dtype=np.float64)
    for label, q in (("p50", 0.5), ("p90", 0.9)):
        value = float(np.quantile(minutes, q)) if minutes.size else None
        add(f"workflow.card_to_action_minutes.{label}", version, site, value, int(minutes.size),
            "ok" if value is not None else "insufficient_data",
            {"cards": int(minutes.size), "method": "numpy quantile (linear)"})


def review_queue_metrics(add: Callable[..., None], counts: OperationsCounts, site: str, window_end_us: int) -> None:
    """The review queue of ``site`` at the window's end (version 0) through ``add``."""
    pending = [created for created, decided in counts.review_items.get(site, [])
               if created < window_end_us and (decided is None or decided >= window_end_us)]
    add("workflow.review_queue_size", 0, site, float(len(pending)), len(pending), "ok", {})
    ages = (window_end_us - np.asarray(pending, dtype=np.float64)) / 3.6e9
    add("workflow.review_queue_age_hours", 0, site, float(ages.max()) if pending else None, len(pending),
        "ok" if pending else "insufficient_data",
        {"median_hours": float(np.median(ages))} if pending else {"reason": "no item pending"})
