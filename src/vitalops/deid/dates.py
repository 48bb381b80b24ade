"""Shifting and truncating FHIR date, dateTime and instant strings.

A shift moves the calendar date by whole days and keeps the time of day and the UTC offset as
written, so every instant of one patient moves by exactly the same number of seconds and the
intervals between that patient's events are preserved.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

_FHIR_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(T.*)?)?)?$")


def shift_date(value: str, days: int) -> str | None:
    """``value`` moved by ``days``, at the precision it was written with; None when it is not a FHIR date.

    A year or year-month is shifted through its middle day and written back at its own
    precision, so partial dates move consistently with full ones.
    """
    match = _FHIR_DATE.match(value)
    if not match:
        return None
    year, month, day, rest = match.groups()
    try:
        if day is not None:
            moved = date(int(year), int(month), int(day)) + timedelta(days=days)
            return moved.isoformat() + (rest or "")
        if month is not None:
            return (date(int(year), int(month), 15) + timedelta(days=days)).strftime("%Y-%m")
        return f"{(date(int(year), 7, 2) + timedelta(days=days)).year:04d}"
    except (ValueError, OverflowError):
        return None


def truncate_to_year(value: str) -> str | None:
    """The year of a FHIR date string, or None when it is not one."""
    match = _FHIR_DATE.match(value)
    return match.group(1) if match else None


def earliest_birthday(value: str) -> date | None:
    """The earliest day a (possibly partial) birth date can mean, for the over-89 test."""
    match = _FHIR_DATE.match(value)
    if not match:
        return None
    year, month, day, _ = match.groups()
    try:
        return date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None


def age_in_years(born: date, on: date) -> int:
    """Completed years between ``born`` and ``on``."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))
