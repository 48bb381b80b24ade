"""Retraining requests: what an alert whose rule's action is ``retrain`` asked for, and how it ended.

A request is recorded in the alert's transaction; the slow work (training on fresh data, the PCCP
check, the shadow deployment) runs later (``monitoring.retraining``). At most one request per model
is ``pending`` or ``running`` at a time (a unique partial index): further alerts while one is are
counted on it. No row holds patient data: a request names the model, versions, site, check and
outcome, and the failed criteria by name.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from vitalops.db.tables.base import Base, UtcDateTime

#: The states in which a model's request still holds its place (one at a time per model).
ACTIVE_STATES = ("pending", "running")
_ACTIVE = text("state IN ('pending', 'running')")


class RetrainingRequestRow(Base):
    """One retraining of a model version on fresh data, from its request to its outcome."""

    __tablename__ = "retraining_requests"
    __table_args__ = (
        Index("uq_retraining_requests_active_model", "model", unique=True, sqlite_where=_ACTIVE,
              postgresql_where=_ACTIVE),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    #: The version whose training spec is re-run (None when the request names none it could retrain).
    base_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    site: Mapped[str] = mapped_column(String(64))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), nullable=True)
    #: pending | running | shadow | passed | gate_failed | refused | failed
    state: Mapped[str] = mapped_column(String(16))
    #: Why it was refused or failed, in plain words (never a patient's data).
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    requested_by: Mapped[str] = mapped_column(String(128))
    #: Alerts that asked for this retraining while it was pending or running (the first included).
    alerts: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    holder: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    facts_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    candidate_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    check_id: Mapped[int | None] = mapped_column(ForeignKey("pccp_checks.id"), nullable=True)
    check_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: JSON list of the check's failed and not evaluable criteria, by name.
    failed_criteria: Mapped[str | None] = mapped_column(Text, nullable=True)
    shadow_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), nullable=True)
    #: The alert raised to governance when the candidate failed its check.
    outcome_alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), nullable=True)
