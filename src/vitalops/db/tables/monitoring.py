"""Tables of monitoring: each version's training reference, and the time series of metric results.

``monitoring_results`` is the contract later stages (alert rules, notifiers, dashboards) read: one
row per metric, model, version, site and window, upserted on that natural key so that computing a
window again replaces its row rather than adding one. ``version`` 0 marks a metric that does not
depend on the version (data quality of a site's feed). No row holds patient data: values are
aggregates, ``details_json`` holds test names, thresholds, p-values and counts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vitalops.db.tables.base import Base, UtcDateTime

#: The status of a result: a value within bounds, too few rows to judge (value may be null), or flagged.
RESULT_STATUSES = ("ok", "insufficient_data", "flagged")


class MonitoringReferenceRow(Base):
    """A version's training reference: per-feature distributions and bins, missing rates, the score
    distribution and flag rate, stored as a content-addressed document in the artifact store."""

    __tablename__ = "monitoring_references"

    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    reference_sha256: Mapped[str] = mapped_column(String(64))
    dataset_fingerprint: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class MonitoringResultRow(Base):
    """One computed value of one metric for one model version at one site over one window."""

    __tablename__ = "monitoring_results"
    __table_args__ = (
        UniqueConstraint("metric_id", "model", "version", "site", "window_start", "window_end",
                         name="uq_monitoring_results_metric_id"),
        Index("ix_monitoring_results_model_window", "model", "window_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    metric_id: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[datetime] = mapped_column(UtcDateTime())
    window_end: Mapped[datetime] = mapped_column(UtcDateTime())
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    n: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    details_json: Mapped[str] = mapped_column(Text)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    run_id: Mapped[str] = mapped_column(String(40))
