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


#: A version's own times in epoch microseconds, each the earliest over its facts: of
#: ``coalesce(issued_at, known_at)`` (used when it is the first version) and of ``known_at``.
VersionTimes = tuple[int, int]
#: When a version is current, ``[known_us, superseded_us)``, and whether it is the first version.
Interval = tuple[int, int, bool]


def version_intervals(times: dict[VersionKey, VersionTimes]) -> dict[VersionKey, Interval]:
    """The validity interval of every version in ``times`` under the rule of this module."""
    by_source: dict[tuple[str, str], list[str]] = {}
    for source_type, source_id, version in times:
        by_source.setdefault((source_type, source_id), []).append(version)
    intervals: dict[VersionKey, Interval] = {}
    for (source_type, source_id), versions in by_source.items():
        if len(versions) == 1:  # most resources have one version: it is first and never superseded
            key = (source_type, source_id, versions[0])
            intervals[key] = (times[key][0], NEVER_US, True)
            continue
        if all(is_number(v) for v in versions):
            versions.sort(key=number_key)
        else:
            versions.sort(key=lambda v: (times[(source_type, source_id, v)][1], v))
        known = [times[(source_type, source_id, versions[0])][0]]
        for version in versions[1:]:
            known.append(max(times[(source_type, source_id, version)][1], known[-1]))
        known.append(NEVER_US)
        for position, version in enumerate(versions):
            intervals[(source_type, source_id, version)] = (known[position], known[position + 1], position == 0)
    return intervals


def version_intervals_sql(relation: str) -> str:
    """A DuckDB SELECT over ``relation`` (facts columns, ``issued_at`` included) giving, per version,
    ``source_type, source_id, source_version, first_version`` (bool), ``version_known_at`` and
    ``superseded_at`` (null while current), under the rule of this module. Resources with one
    version (most of them) skip the window functions that order versions."""
    source = "PARTITION BY source_type, source_id"
    return f"""
WITH own AS (
    SELECT source_type, source_id, source_version,
           min(coalesce(issued_at, known_at)) AS first_at, min(known_at) AS later_at,
           count(*) OVER ({source}) AS versions
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
    FROM (
        SELECT *, bool_and(regexp_full_match(source_version, '[0-9]+')) OVER ({source}) AS all_numbered
        FROM own WHERE versions > 1
    )
),
known AS (
    SELECT source_type, source_id, source_version, position, position = 1 AS first_version,
           max(CASE WHEN position = 1 THEN first_at ELSE later_at END) OVER (
               {source} ORDER BY position ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
           ) AS version_known_at
    FROM placed
)
SELECT source_type, source_id, source_version, true AS first_version, first_at AS version_known_at,
       CAST(NULL AS TIMESTAMPTZ) AS superseded_at
FROM own WHERE versions = 1
UNION ALL
SELECT source_type, source_id, source_version, first_version, version_known_at,
       lead(version_known_at) OVER ({source} ORDER BY position) AS superseded_at
FROM known
"""


def fact_known_sql(fact: str, version: str) -> str:
    """SQL for a fact's own known time: its version's, or later where the fact's time (``issued_at``
    for a first version, else ``known_at``) was raised to its ``effective_at``. ``fact`` is a facts
    alias, ``version`` an alias of ``version_intervals_sql`` output."""
    return (
        f"greatest({version}.version_known_at, CASE WHEN {version}.first_version "
        f"THEN coalesce({fact}.issued_at, {fact}.known_at) ELSE {fact}.known_at END)"
    )
