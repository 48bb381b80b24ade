"""Tables of alerting: each model's filed rule sets, the alerts they raise, each notification
attempt's outcome, and incidents.

An alert is keyed, while unresolved, on (model, rule, metric id, version, site): a breach of the
same key updates the alert instead of opening another. No row holds patient data: an alert names
the model, version, site, metric, value, threshold and window; a delivery row names the notifier,
its outcome and the attempts it took.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vitalops.db.tables.base import Base, UtcDateTime


class AlertRuleSetRow(Base):
    """One filed version of a model's alert rules (the YAML as filed, and its sha256)."""

    __tablename__ = "alert_rule_sets"
    __table_args__ = (UniqueConstraint("model_id", "number", name="uq_alert_rule_sets_model_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    number: Mapped[int] = mapped_column(Integer)
    spec_yaml: Mapped[str] = mapped_column(Text)
    spec_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(128))


class IncidentRow(Base):
    """An incident around one or more alerts of a model, closed with the post-incident review's findings."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))  # open | closed
    kind: Mapped[str] = mapped_column(String(16))  # incident | review (a governance task an alert opened)
    title: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    opened_by: Mapped[str] = mapped_column(String(128))
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    findings: Mapped[str | None] = mapped_column(Text, nullable=True)


class AlertRow(Base):
    """One alert: a rule's breach for one metric id, version and site, from its first to its latest window."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_model_state", "model", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str] = mapped_column(String(64))
    rule_set: Mapped[int] = mapped_column(Integer)
    metric_id: Mapped[str] = mapped_column(String(200))
    comparison: Mapped[str] = mapped_column(String(2))
    threshold: Mapped[float] = mapped_column(Float)
    window: Mapped[str] = mapped_column(String(8))
    severity: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    action_outcome: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # open | acknowledged | resolved
    value: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime())
    window_end: Mapped[datetime] = mapped_column(UtcDateTime())
    count: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), nullable=True)


class AlertDeliveryRow(Base):
    """The outcome of notifying one alert event through one notifier, after its retries."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    notifier: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | failed
    attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
