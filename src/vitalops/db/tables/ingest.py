"""Ingest batches: one row per run of ``ingest``, with its counts (never patient data)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vitalops.db.tables.base import Base, UtcDateTime

#: Batch statuses: ``running`` until it ends, then ``completed`` or ``failed``. A batch killed
#: mid-run stays ``running``; its committed facts are kept and a rerun adds only what is missing.
BATCH_STATUSES = ("running", "completed", "failed")


class IngestBatchRow(Base):
    __tablename__ = "ingest_batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(16))
    counts_json: Mapped[str] = mapped_column(Text, default="{}")
    started_by: Mapped[str] = mapped_column(String(128))
