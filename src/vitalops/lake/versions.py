"""When each version of a source resource became known, and which version is current at a moment.

Facts store two times a version's known time is made from: ``known_at``, when the version was
made available (``meta.lastUpdated``, else the ingest time), and ``issued_at``, the resource's
``issued`` (Observation results only; null elsewhere, retractions included: a retraction is
made available at its lastUpdated). Both are raised to ``effective_at`` at ingest.
The rule, for the versions of one source resource (``source_type``, ``source_id``) in the lake:

* succession: when every version id of the resource is a whole number, versions follow one
  another by that number (so "10" follows "9"); otherwise by ``known_at``, then by version id
  as text (ids that are not numbers, such as a ``meta.lastUpdated`` standing in for a missing
  versionId or a content hash, say nothing reliable about order);
* the first version is known at its ``issued`` (else ``known_at``: lastUpdated, else ingest
  time); each later version at its own ``known_at`` (an amendment keeps the original
  ``issued``), never earlier than the version before it: the version known time is the running
  maximum along the succession, so versions also order by (known time, succession);
* a version is current from its known time until the next version's (a version whose successor
  is known at the same time is never current); a fact of it counts at T when ``effective_at <= T``
  and its own known time (the version's, or later where the fact was raised to its
  ``effective_at``) ``<= T``.

Because known times are computed when facts are read, a version that arrives in a later batch
(version 1 on Monday, version 2 on Wednesday) is placed after the versions already in the lake,
without any lookup at ingest. Lakes written before ``issued_at`` existed hold ``issued`` in
``known_at`` for Observations and no ``issued_at``: they stay readable (a missing ``issued_at``
reads as null), with their earlier known times.

The rule exists twice, as DuckDB SQL (``version_intervals_sql``, used by the lake's PIT view and
the feature engine) and in plain Python (``version_intervals``, used by the online kernel);
``tests/lake/test_versions.py`` holds them equal on random histories.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: A version key: (source_type, source_id, source_version).
VersionKey = tuple[str, str, str]
NEVER_US = 9_223_372_036_854_775_807


def is_number(version: str) -> bool:
    """Whether a version id is a whole number (ASCII digits only)."""
    return version.isascii() and version.isdigit()


def number_key(version: str) -> tuple[int, str, str]:
    """Orders whole-number ids as numbers of any size ("9" < "10"; "01" just after "1")."""
    digits = version.lstrip("0")
    return len(digits), digits, version


@dataclass(frozen=True, slots=True)
class VersionTimes:
    """One version's own times (epoch microseconds): the earliest over its facts of
    ``coalesce(issued_at, known_at)`` (``first_us``) and of ``known_at`` (``later_us``)."""

    first_us: int
    later_us: int


@dataclass(frozen=True, slots=True)
class Interval:
    """When a version is current: ``[known_us, superseded_us)``; ``first`` for the first version."""

    known_us: int
    superseded_us: int
    first: bool


def version_intervals(times: dict[VersionKey, VersionTimes]) -> dict[VersionKey, Interval]:
    """The validity interval of every version in ``times`` under the rule of this module."""
    by_source: dict[tuple[str, str], list[str]] = {}
    for source_type, source_id, version in times:
        by_source.setdefault((source_type, source_id), []).append(version)
    intervals: dict[VersionKey, Interval] = {}
    for (source_type, source_id), versions in by_source.items():
        ordered = _succession(source_type, source_id, versions, times)
        known: list[int] = []
        for position, version in enumerate(ordered):
            own = times[(source_type, source_id, version)]
            moment = own.first_us if position == 0 else max(own.later_us, known[-1])
            known.append(moment)
        for position, version in enumerate(ordered):
            following = known[position + 1] if position + 1 < len(known) else NEVER_US
            intervals[(source_type, source_id, version)] = Interval(known[position], following, position == 0)
    return intervals


def _succession(source_type: str, source_id: str, versions: Iterable[str],
                times: dict[VersionKey, VersionTimes]) -> list[str]:
    versions = list(versions)
    if all(is_number(v) for v in versions):
        return sorted(versions, key=number_key)
    return sorted(versions, key=lambda v: (times[(source_type, source_id, v)].later_us, v))


def fact_known_us(interval: Interval, known_us: int, issued_us: int | None) -> int:
    """A fact's own known time: its version's, or later where the fact's time was raised to its
    ``effective_at`` (``issued_at`` counts for the first version only)."""
    own = issued_us if interval.first and issued_us is not None else known_us
    return max(interval.known_us, own)


def version_intervals_sql(relation: str) -> str:
    """A DuckDB SELECT over ``relation`` (facts columns, ``issued_at`` included) giving, per version,
    ``source_type, source_id, source_version, first_version`` (bool), ``version_known_at`` and
    ``superseded_at`` (null while current), under the rule of this module."""
    source = "PARTITION BY source_type, source_id"
    return f"""
WITH own AS (
    SELECT source_type, source_id, source_version,
           min(coalesce(issued_at, known_at)) AS first_at, min(known_at) AS later_at,
           regexp_full_match(source_version, '[0-9]+') AS numbered
    FROM {relation} GROUP BY source_type, source_id, source_version
),
placed AS (
    SELECT *, row_number() OVER (
        {source}
        ORDER BY CASE WHEN all_numbered THEN length(ltrim(source_version, '0')) END,
                 CASE WHEN all_numbered THEN ltrim(source_version, '0') END,
                 CASE WHEN NOT all_numbered THEN later_at END,
                 source_version
    ) AS position
    FROM (SELECT *, bool_and(numbered) OVER ({source}) AS all_numbered FROM own)
),
known AS (
    SELECT source_type, source_id, source_version, position, position = 1 AS first_version,
           max(CASE WHEN position = 1 THEN first_at ELSE later_at END) OVER (
               {source} ORDER BY position ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
           ) AS version_known_at
    FROM placed
)
SELECT source_type, source_id, source_version, first_version, version_known_at,
       lead(version_known_at) OVER ({source} ORDER BY position) AS superseded_at
FROM known
"""


def fact_known_sql(fact: str, version: str) -> str:
    """SQL for a fact's own known time (``fact_known_us`` in SQL): ``fact`` a facts alias,
    ``version`` an alias of ``version_intervals_sql`` output."""
    return (
        f"greatest({version}.version_known_at, CASE WHEN {version}.first_version "
        f"THEN coalesce({fact}.issued_at, {fact}.known_at) ELSE {fact}.known_at END)"
    )
