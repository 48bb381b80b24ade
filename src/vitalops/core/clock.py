"""Time inside VitalOps is always timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive value is taken to be UTC already (as SQLite returns them)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def isoformat_utc(moment: datetime) -> str:
    """Canonical text of a moment: UTC, microseconds, ``Z`` suffix."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
