"""Bounded parameter types for every route: odd input is a 422, never an overflow or a 500.

Integers stay inside a signed 64-bit column (versions inside 32 bits), pages are capped, times are
timezone-aware moments that convert to UTC inside years 1900-9000, and free strings carry no control
characters (PostgreSQL refuses NUL in text) and have a length cap. Use these in path, query and body
declarations rather than bare ``int``, ``str`` or ``datetime``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, Field

#: The largest value a BIGINT column holds.
INT64_MAX = 2**63 - 1
#: The largest value an INTEGER column holds (version numbers, plan versions).
INT32_MAX = 2**31 - 1
#: The deepest page a list may start at: beyond it, page forward with a cursor.
OFFSET_MAX = 1_000_000
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
#: No C0 control characters and no DEL; tabs and newlines are refused in names, allowed in prose.
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
_PROSE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


def _bounded_moment(moment: datetime) -> datetime:
    """The moment in UTC; naive values are refused (a time without an offset is ambiguous)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a time needs a UTC offset (for example 2026-01-31T08:00:00Z)")
    try:
        in_utc = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("the time is outside the supported range (years 1900 to 9000)") from None
    if not EARLIEST <= in_utc < LATEST:
        raise ValueError("the time is outside the supported range (years 1900 to 9000)")
    return in_utc


#: A timezone-aware moment within years 1900-9000, returned in UTC.
Moment = Annotated[datetime, AfterValidator(_bounded_moment)]
#: A name or code in a path or a filter (a model, a site, a user, an object id).
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=_NO_CONTROL)]
#: A short label in a body (a mode, a key's name).
Label = Annotated[str, Field(min_length=1, max_length=200, pattern=_NO_CONTROL)]
#: A reason or other prose a person wrote (newlines allowed, other control characters not).
Reason = Annotated[str, Field(min_length=1, max_length=2000, pattern=_PROSE)]
#: A version number in a body.
VersionNumber = Annotated[int, Field(ge=1, le=INT32_MAX)]

NamePath = Annotated[str, Path(min_length=1, max_length=200, pattern=_NO_CONTROL)]
VersionPath = Annotated[int, Path(ge=1, le=INT32_MAX, description="a version number")]
NameQuery = Annotated[str | None, Query(min_length=1, max_length=200, pattern=_NO_CONTROL)]
MomentQuery = Annotated[Moment | None, Query(description="a time with its UTC offset, years 1900-9000")]
Offset = Annotated[int, Query(ge=0, le=OFFSET_MAX, description="rows to skip")]
SeqCursor = Annotated[int | None, Query(ge=0, le=INT64_MAX, description="page forward after this sequence number")]

