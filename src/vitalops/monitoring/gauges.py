"""Prometheus gauges of the latest value of each monitored metric per model, version and site.

``vitalops_monitoring_metric{model,version,site,metric}`` is the newest window's value of each
metric id (``latest_results``), and ``vitalops_monitoring_metric_flagged`` with the same labels is
1 when that result is flagged, 0 otherwise. Results with too few rows (``insufficient_data``, no
value) are left out rather than shown as a number. Only versions with a live deployment are
exported (and version 0, a site's data quality), so the series are bounded by metric ids x sites x
live versions per model: a retired version's series disappear at the next refresh.

The values are a snapshot held in memory and swapped whole: loaded from the stored results when
the server starts, and refreshed for the models a run computed (scheduled, or ``POST
/v1/monitoring/runs``) by the worker that ran it, and by every other worker when the schedule
shows a run newer than its snapshot. A scrape never reads the database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vitalops.db import Database

LABELS = ["model", "version", "site", "metric"]


@dataclass(frozen=True)
class LatestValue:
    model: str
    version: int
    site: str
    metric: str
    value: float
    flagged: bool


def latest_values(database: Database, models: Iterable[str] | None = None) -> dict[str, list[LatestValue]]:
    """The exported values of ``models`` (default: every model with a live deployment), by model."""
    from vitalops.monitoring.results import latest_results
    from vitalops.monitoring.scheduler import deployed_models

    values: dict[str, list[LatestValue]] = {}
    with database.read_session() as session:
        live = deployed_models(session)
        for model in sorted(live if models is None else set(models)):
            versions = live.get(model, set()) | {0}
            values[model] = [
                LatestValue(model, r.version, r.site, r.metric_id, r.value, r.status == "flagged")
                for r in latest_results(session, model=model)
                if r.value is not None and r.status != "insufficient_data" and r.version in versions
            ] if model in live else []
    return values


class MonitoringGauges(Collector):
    """The snapshot behind the gauges; ``refresh`` replaces a model's series (thread-safe)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._lock = threading.Lock()
        self._values: dict[str, list[LatestValue]] = {}

    def refresh(self, models: Iterable[str] | None = None) -> None:
        """Reload ``models`` (default: all, dropping models no longer deployed) from the stored results."""
        fresh = latest_values(self.database, models)
        with self._lock:
            self._values = {**({} if models is None else self._values), **fresh}
            self._values = {model: series for model, series in self._values.items() if series}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            series = [value for model in sorted(self._values) for value in self._values[model]]
        metric = GaugeMetricFamily("vitalops_monitoring_metric",
                                   "Latest window's value of each monitored metric", labels=LABELS)
        flagged = GaugeMetricFamily("vitalops_monitoring_metric_flagged",
                                    "1 when the latest window's result of the metric is flagged", labels=LABELS)
        for value in series:
            labels = [value.model, str(value.version), value.site, value.metric]
            metric.add_metric(labels, value.value)
            flagged.add_metric(labels, 1.0 if value.flagged else 0.0)
        yield metric
        yield flagged
