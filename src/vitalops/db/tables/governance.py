"""Tables of governance: registered sites, approvals, change-control plans with their decisions, checks and
reviews, and deployments."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vitalops.db.tables.base import Base, UtcDateTime


class SiteRow(Base):
    """A site of this installation; ``tag_values_json`` lists the feed's site tag values that map to it."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    tag_values_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(128))


class ApprovalRow(Base):
    __tablename__ = "model_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    approver: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    reason: Mapped[str] = mapped_column(Text)
    report_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class PccpRow(Base):
    __tablename__ = "pccps"
    __table_args__ = (UniqueConstraint("model_id", "number", name="uq_pccps_model_id_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    spec_yaml: Mapped[str] = mapped_column(Text)
    spec_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), server_default="proposed")  # see governance.pccp.PLAN_STATES
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class PccpDecisionRow(Base):
    """One approver's decision on a proposed plan version."""

    __tablename__ = "pccp_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pccp_id: Mapped[int] = mapped_column(ForeignKey("pccps.id"), index=True)
    approver: Mapped[str] = mapped_column(String(128))
    credential: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class PccpCheckRow(Base):
    __tablename__ = "pccp_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    pccp_id: Mapped[int] = mapped_column(ForeignKey("pccps.id"))
    champion_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), server_default="failed")  # passed | failed | incomplete
    #: What the check judged, besides the plan, champion and scope: a change to either closes the gate.
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    report_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    results_json: Mapped[str] = mapped_column(Text)
    evidence_hash: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class PccpReviewRow(Base):
    __tablename__ = "pccp_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    check_id: Mapped[int | None] = mapped_column(ForeignKey("pccp_checks.id"), nullable=True)
    reviewer: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    waived_json: Mapped[str] = mapped_column(Text, server_default="[]")
    credential: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class DeploymentEventRow(Base):
    """One change of what runs where: append-only; the current state is the latest event per slot."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    site: Mapped[str] = mapped_column(String(64))
    slot: Mapped[str] = mapped_column(String(16))  # champion | challenger
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    mode: Mapped[str] = mapped_column(String(16))  # shadow | canary | ab | champion | none
    percent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(16))  # deploy | rollback
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    #: The end of the period the deployment was declared for (a retrained shadow's), if any: after it
    #: nothing happens by itself; people decide.
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
