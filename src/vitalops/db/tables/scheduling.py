"""The lease of the API servers' monitoring scheduler: one row per schedule, shared by every worker.

A worker runs a cadence tick only after moving ``tick`` forward with one conditional UPDATE
(``monitoring.scheduler``), so of several workers or servers over one database exactly one runs
each tick; the row also holds the last run's times and outcome, which every worker reports alike.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vitalops.db.tables.base import Base, UtcDateTime


class MonitoringScheduleRow(Base):
    """A schedule's last claimed tick, who holds it until when, and how its last run ended."""

    __tablename__ = "monitoring_schedule"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The cadence tick last claimed: whole cadences since the epoch (-1: none yet).
    tick: Mapped[int] = mapped_column(BigInteger)
    #: ``running`` while a worker holds the lease, ``idle`` otherwise.
    state: Mapped[str] = mapped_column(String(16))
    holder: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    #: ``ok`` or ``failed`` (at least one model's run raised); None before the first run ends.
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    models: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    failures_total: Mapped[int] = mapped_column(Integer, default=0)
