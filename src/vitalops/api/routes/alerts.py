"""``/v1/alerts``: alerts raised by monitoring rules, acknowledged and resolved by operators;
``/v1/incidents``: incidents around them and their reviews; the count of unresolved alerts per
model, site and severity in ``/metrics``. Thin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, status
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from vitalops.api.deps import DatabaseDep, require
from vitalops.api.params import INT32_MAX, NamePath, NameQuery, Offset, Reason
from vitalops.auth import Permission, Principal
from vitalops.db import Database

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
incidents_router = APIRouter(prefix="/v1/incidents", tags=["alerts"])
Reader = Annotated[Principal, Depends(require(Permission.ALERTS_READ))]
Manager = Annotated[Principal, Depends(require(Permission.ALERTS_MANAGE))]
AlertId = Annotated[int, Path(ge=1, le=INT32_MAX, description="an alert id")]  # an INTEGER key
IncidentId = Annotated[int, Path(ge=1, le=INT32_MAX, description="an incident id")]  # an INTEGER key


class ReasonBody(BaseModel):
    reason: Reason


class IncidentBody(BaseModel):
    alert: Annotated[int, Field(ge=1, le=INT32_MAX)]
    title: Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")] | None = None


class FindingsBody(BaseModel):
    findings: Annotated[str, Field(min_length=1, max_length=20_000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")]


@router.get("")
def get_alerts(
    database: DatabaseDep, actor: Reader, model: NameQuery = None, site: NameQuery = None,
    state: Annotated[Literal["open", "acknowledged", "resolved"] | None, Query()] = None,
    severity: Annotated[Literal["info", "warning", "critical"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: Offset = 0,
) -> dict[str, Any]:
    """Alerts, newest first (no patient data: model, version, site, metric, value, threshold, window)."""
    from vitalops.monitoring.alerts import list_alerts

    alerts = list_alerts(database, actor, model=model, state=state, site=site, severity=severity, limit=limit,
                         offset=offset)
    return {"alerts": [alert.model_dump(mode="json") for alert in alerts]}


class RulesBody(BaseModel):
    rules_yaml: Annotated[str, Field(min_length=1, max_length=256 * 1024)]


@router.get("/rules/{model}")
def get_rules(model: NamePath, database: DatabaseDep, actor: Reader) -> dict[str, Any]:
    """The alert rules in force for a model: its version, sha256, the YAML as filed and the rules."""
    from vitalops.monitoring.alert_rules import get_rules as rules_of

    return rules_of(database, actor, model).model_dump(mode="json")


@router.put("/rules/{model}")
def put_rules(model: NamePath, body: RulesBody, database: DatabaseDep, actor: Manager) -> dict[str, Any]:
    """File a new version of a model's alert rules (422 naming the rule and field of a bad one)."""
    from vitalops.monitoring.alert_rules import set_rules

    return set_rules(database, actor, model, body.rules_yaml).model_dump(mode="json")


@router.get("/{alert_id}")
def get_alert(alert_id: AlertId, database: DatabaseDep, actor: Reader) -> dict[str, Any]:
    """One alert with the outcome of each notification."""
    from vitalops.monitoring.alerts import get_alert as read_alert

    return read_alert(database, actor, alert_id)


@router.post("/{alert_id}/ack")
def post_ack(alert_id: AlertId, body: ReasonBody, database: DatabaseDep, actor: Manager) -> dict[str, Any]:
    """Acknowledge an open alert with a reason (409 from any other state)."""
    from vitalops.monitoring.alerts import acknowledge_alert

    return acknowledge_alert(database, actor, alert_id, reason=body.reason).model_dump(mode="json")


@router.post("/{alert_id}/resolve")
def post_resolve(alert_id: AlertId, body: ReasonBody, database: DatabaseDep, actor: Manager) -> dict[str, Any]:
    """Resolve an open or acknowledged alert with a reason (409 once resolved)."""
    from vitalops.monitoring.alerts import resolve_alert

    return resolve_alert(database, actor, alert_id, reason=body.reason).model_dump(mode="json")


@incidents_router.get("")
def get_incidents(
    database: DatabaseDep, actor: Reader, model: NameQuery = None,
    state: Annotated[Literal["open", "closed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Incidents, newest first."""
    from vitalops.monitoring.incidents import list_incidents

    incidents = list_incidents(database, actor, model=model, state=state, limit=limit)
    return {"incidents": [incident.model_dump(mode="json") for incident in incidents]}


@incidents_router.post("", status_code=status.HTTP_201_CREATED)
def post_incident(body: IncidentBody, database: DatabaseDep, actor: Manager) -> dict[str, Any]:
    """Open an incident around an alert (409 when the alert already has one)."""
    from vitalops.monitoring.incidents import open_incident

    return open_incident(database, actor, body.alert, title=body.title).model_dump(mode="json")


@incidents_router.get("/{incident_id}")
def get_incident(incident_id: IncidentId, database: DatabaseDep, actor: Reader) -> dict[str, Any]:
    """The incident and its timeline: its alerts, what was done, and the model's audit events around it."""
    from vitalops.monitoring.incidents import show_incident

    return show_incident(database, actor, incident_id)


@incidents_router.post("/{incident_id}/close")
def post_close(incident_id: IncidentId, body: FindingsBody, database: DatabaseDep, actor: Manager) -> dict[str, Any]:
    """Close an open incident with the post-incident review's findings (409 once closed)."""
    from vitalops.monitoring.incidents import close_incident

    return close_incident(database, actor, incident_id, findings=body.findings).model_dump(mode="json")


class OpenAlertsCollector(Collector):
    """Unresolved alerts by model, site and severity, read from the database at each scrape."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from vitalops.monitoring.alerts import unresolved_counts

        try:
            with self.database.read_session() as session:
                counts = unresolved_counts(session)
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database hiccupped
            return
        gauge = GaugeMetricFamily("vitalops_alerts_open", "Alerts open or acknowledged, not yet resolved",
                                  labels=["model", "site", "severity"])
        for (model, site, severity), count in sorted(counts.items()):
            gauge.add_metric([model, site, severity], count)
        yield gauge


def install_alert_metrics(app: FastAPI, database: Database) -> None:
    app.state.metrics.registry.register(OpenAlertsCollector(database))
