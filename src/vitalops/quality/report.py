"""The data-quality report: per batch and site, over the facts and quarantine tables.

Rules (stable ids, each counted per site):
- ``required.*``, ``unit.*``, ``date.*`` and every other quarantine rule: records rejected at ingest;
- ``range.implausible``: numeric facts outside their concept's plausible range (terminology);
- ``date.future``: facts that happen after the batch ran (or after now, without a batch);
- ``date.impossible``: facts before 1900, or before the patient's birth;
- ``reference.unknown_patient``: patients with clinical facts but no Patient resource ingested
  (kept, not quarantined: bulk exports are not ordered);
- ``code.unmapped``: facts whose code maps to no concept, listed by code system and code;
- ``code.absent``: coded facts (conditions, medications, procedures, observations) without a
  usable code: a local code no mapping names, or one not in its system's syntax, is not stored;
- ``duplicates``: facts repeated in the input or already in the lake;
- ``conditions_dated_recorded``: conditions without an onset date, dated by their ``recordedDate``
  (the fact's ``effective_basis`` is ``recorded``: when it was entered, at or after its onset);
- ``observations_without_effective``: Observations quarantined for want of ``effective[x]``
  (``required.effective``, with or without ``issued``; the ``quarantined`` count of that rule also
  holds medication orders and administrations without a start time);
plus completeness (facts per concept and day), birth years and freshness.

No patient data appears, and no statistic equals one patient's value. Each figure is a count, a
concept or code, or a time that at least ``minimum_patients`` patients share (default: the
installation's small-cell threshold, ``VITALOPS_SMALL_GROUP_MIN``):
- dates of birth appear only as years (demographic facts, which take the birth date as their time,
  are left out of completeness and freshness): ``first_year`` is the earliest year by which at least k
  patients were born, ``last_year`` the latest year in or after which at least k were, and years
  of patients over 89 are shown as one ``"<year> or earlier"`` (HIPAA Safe Harbor ages);
- the first and last day of a concept's facts are the earliest day by which k patients had one,
  and the latest day on or after which k patients had one; per-day counts are shown for days with
  facts of at least k patients (the rest are counted in ``days_suppressed``);
- freshness is the latest day on or after which facts of at least k patients happened or became
  known, never the time of one fact;
- an unmapped code is listed when at least k patients have it; the rest are counted together.
A figure that fewer than k patients support is None.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import orjson
import pyarrow.compute as pc
from sqlalchemy import select

from vitalops.auth import Permission, Principal, authorize
from vitalops.core import duck
from vitalops.core.clock import as_utc, utcnow
from vitalops.core.settings import get_settings
from vitalops.db import Database
from vitalops.db.tables.ingest import IngestBatchRow
from vitalops.errors import InvalidInput, NotFound
from vitalops.lake.facts import FactsStore
from vitalops.lake.quarantine import QuarantineStore
from vitalops.lake.schema import RECORDED
from vitalops.terminology import load_terminology

EARLIEST_PLAUSIBLE = datetime(1900, 1, 1).isoformat() + "+00:00"
COMPLETENESS_DAYS = 14  # days of per-day counts shown per concept (the latest days with data)
TOP_UNMAPPED = 20
#: HIPAA Safe Harbor (45 CFR 164.514(b)(2)(i)(C)): ages over 89 are aggregated into one category.
OLDEST_SHOWN_AGE = 89
#: Fact kinds that carry a code when their source does (a missing one counts as ``code.absent``).
CODED_KINDS = ("condition", "medication", "procedure", "vital", "lab", "observation")


@dataclass
class SiteQuality:
    """Quality figures of one site."""

    site: str
    facts: int = 0
    patients: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)  # rule -> records
    implausible: dict[str, dict[str, Any]] = field(default_factory=dict)  # concept -> n, out of range, bounds
    future_dates: int = 0
    impossible_dates: int = 0
    unknown_patients: int = 0
    unmapped_codes: list[dict[str, Any]] = field(default_factory=list)
    codes_absent: int = 0
    conditions_dated_recorded: int = 0
    observations_without_effective: int = 0
    birth_years: dict[str, Any] = field(default_factory=dict)
    completeness: dict[str, dict[str, Any]] = field(default_factory=dict)
    freshness: dict[str, Any] = field(default_factory=dict)


@dataclass
class QualityReport:
    """The report; ``to_dict()`` is JSON-safe."""

    batch_id: str | None
    generated_at: datetime
    duplicates: int
    sites: list[SiteQuality]
    minimum_patients: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quality_report(
    database: Database,
    lake_root: str,
    *,
    batch_id: str | None = None,
    principal: Principal | None = None,
    minimum_patients: int | None = None,
) -> QualityReport:
    """Compute the report over the whole lake or one batch; ``minimum_patients`` is the k of the
    module docstring (default ``small_group_min``). Raises NotFound for an unknown batch and
    PermissionDenied when ``principal`` is given and lacks QUALITY_READ."""
    if principal is not None:
        authorize(
            database, principal, Permission.QUALITY_READ, object_type="quality_report", object_id=batch_id or "all"
        )
    now = utcnow()
    k = minimum_patients if minimum_patients is not None else get_settings().small_group_min
    if k < 1:
        raise InvalidInput("minimum_patients must be at least 1", details={"field": "minimum_patients"})
    with database.session() as session:
        query = select(IngestBatchRow)
        if batch_id is not None:
            query = query.where(IngestBatchRow.id == batch_id)
        batches = list(session.scalars(query))
    if batch_id is not None and not batches:
        raise NotFound(f"ingest batch {batch_id} does not exist")
    duplicates = sum(int(orjson.loads(b.counts_json).get("duplicates", 0)) for b in batches)
    cutoff = as_utc(batches[0].started_at) if batch_id is not None else now
    connection = duck.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        dataset = FactsStore(lake_root).dataset()
        connection.register("all_facts", dataset)
        if batch_id is not None:
            connection.register("facts", dataset.to_table(filter=pc.field("batch_id") == batch_id))
        else:
            connection.register("facts", dataset)
        connection.register("quarantine", QuarantineStore(lake_root).read(batch_id))
        sites = _sites(connection)
        _counts(connection, sites)
        _quarantine(connection, sites)
        _ranges(connection, sites)
        _dates(connection, sites, cutoff)
        _unknown_patients(connection, sites)
        _unmapped(connection, sites, k)
        _codes_absent(connection, sites)
        _time_sources(connection, sites)
        _birth_years(connection, sites, k, now)
        _completeness(connection, sites, k)
        _freshness(connection, sites, now, k)
    finally:
        connection.close()
    return QualityReport(batch_id, now, duplicates, [sites[name] for name in sorted(sites)], k)


def _sites(connection: duckdb.DuckDBPyConnection) -> dict[str, SiteQuality]:
    names = {row[0] for row in connection.sql("SELECT DISTINCT site FROM facts").fetchall()}
    names |= {row[0] for row in connection.sql("SELECT DISTINCT site FROM quarantine").fetchall()}
    return {name: SiteQuality(site=name) for name in names}


def _counts(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality]) -> None:
    for site, facts, patients in connection.sql(
        "SELECT site, count(*), count(DISTINCT patient_key) FROM facts GROUP BY site"
    ).fetchall():
        sites[site].facts, sites[site].patients = facts, patients


def _quarantine(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality]) -> None:
    for site, rule, count in connection.sql(
        "SELECT site, rule, count(*) FROM quarantine GROUP BY ALL ORDER BY rule"
    ).fetchall():
        sites[site].quarantined[rule] = count


def _ranges(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality]) -> None:
    bounds = [
        (c.name, c.plausible_low, c.plausible_high)
        for c in load_terminology().concepts()
        if c.plausible_low is not None or c.plausible_high is not None
    ]
    if not bounds:
        return
    connection.execute("CREATE TEMP TABLE bounds (concept VARCHAR, low DOUBLE, high DOUBLE)")
    connection.executemany("INSERT INTO bounds VALUES (?, ?, ?)", bounds)
    for site, concept, total, outside, low, high in connection.sql(
        """
        SELECT site, f.concept, count(*),
               count(*) FILTER (WHERE value_num < coalesce(low, -'inf'::DOUBLE)
                                   OR value_num > coalesce(high, 'inf'::DOUBLE)),
               any_value(low), any_value(high)
        FROM facts f JOIN bounds b ON f.concept = b.concept
        WHERE value_num IS NOT NULL GROUP BY ALL ORDER BY 2
        """
    ).fetchall():
        sites[site].implausible[concept] = {"facts": total, "out_of_range": outside, "low": low, "high": high}


def _dates(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality], cutoff: datetime) -> None:
    for site, future in connection.execute(
        "SELECT site, count(*) FROM facts WHERE effective_at > $cutoff GROUP BY site", {"cutoff": cutoff}
    ).fetchall():
        sites[site].future_dates = future
    for site, impossible in connection.execute(
        """
        WITH births AS (
            SELECT patient_key, min(effective_at) AS born FROM all_facts WHERE concept = 'birth' GROUP BY 1
        )
        SELECT site, count(*) FROM facts f LEFT JOIN births b USING (patient_key)
        WHERE f.effective_at < $earliest::TIMESTAMPTZ
           OR (f.concept IS DISTINCT FROM 'birth' AND b.born IS NOT NULL AND f.effective_at < b.born)
        GROUP BY site
        """,
        {"earliest": EARLIEST_PLAUSIBLE},
    ).fetchall():
        sites[site].impossible_dates = impossible


def _unknown_patients(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality]) -> None:
    for site, unknown in connection.sql(
        """
        SELECT site, count(DISTINCT patient_key) FROM facts
        WHERE patient_key NOT IN (SELECT patient_key FROM all_facts WHERE source_type = 'Patient')
        GROUP BY site
        """
    ).fetchall():
        sites[site].unknown_patients = unknown


def _unmapped(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality], k: int) -> None:
    rows = connection.execute(
        """
        SELECT site, source_type, code_system, code, count(*) AS n, count(DISTINCT patient_key) AS patients
        FROM facts WHERE concept IS NULL AND code IS NOT NULL GROUP BY ALL ORDER BY n DESC, code
        """
    ).fetchall()
    rare: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for site, source_type, system, code, count, patients in rows:
        if patients < k:
            rare[site][0] += 1
            rare[site][1] += count
        elif len(sites[site].unmapped_codes) < TOP_UNMAPPED:
            sites[site].unmapped_codes.append(
                {"source_type": source_type, "code_system": system, "code": code, "facts": count}
            )
    for site, (codes, count) in rare.items():
        sites[site].unmapped_codes.append(
            {"source_type": None, "code_system": None, "code": None, "facts": count,
             "codes": codes, "note": f"codes each held by fewer than {k} patients"}
        )


def _codes_absent(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality]) -> None:
    kinds = ", ".join(f"'{kind}'" for kind in CODED_KINDS)
    for site, count in connection.sql(
        f"SELECT site, count(*) FROM facts WHERE code IS NULL AND concept IS NULL AND kind IN ({kinds}) GROUP BY site"  # noqa: S608 - constants
    ).fetchall():
        sites[site].codes_absent = count


def _time_sources(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality]) -> None:
    for site, count in connection.sql(
        "SELECT site, count(*) FROM facts WHERE kind = 'condition' AND effective_basis = $recorded GROUP BY site",
        params={"recorded": RECORDED},
    ).fetchall():
        sites[site].conditions_dated_recorded = count
    for site, count in connection.sql(
        "SELECT site, count(*) FROM quarantine WHERE resource_type = 'Observation' AND rule = 'required.effective' "
        "GROUP BY site"
    ).fetchall():
        sites[site].observations_without_effective = count


def _kth(values: list[Any], k: int, *, largest: bool) -> Any:
    """The k-th smallest (or largest) of ``values``: a bound that at least k of them reach, or None
    when there are fewer than k."""
    if len(values) < k:
        return None
    ordered = sorted(values, reverse=largest)
    return ordered[k - 1]


def _birth_years(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality], k: int,
                 now: datetime) -> None:
    years: dict[str, list[int]] = defaultdict(list)
    for site, year in connection.sql(
        """
        SELECT site, year(min(effective_at)) FROM facts WHERE concept = 'birth' GROUP BY site, patient_key
        """
    ).fetchall():
        years[site].append(int(year))
    oldest = now.year - OLDEST_SHOWN_AGE - 1  # born in this year or earlier: possibly over 89

    def shown(year: int | None) -> int | str | None:
        if year is None:
            return None
        return f"{oldest} or earlier" if year <= oldest else year

    for site, born in years.items():
        sites[site].birth_years = {
            "patients": len(born),
            "first_year": shown(_kth(born, k, largest=False)),
            "last_year": shown(_kth(born, k, largest=True)),
        }


def _completeness(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality], k: int) -> None:
    per_day: dict[tuple[str, str], dict[str, tuple[int, int]]] = defaultdict(dict)
    for site, concept, day, count, patients in connection.sql(
        """
        SELECT site, concept, CAST(effective_at AS DATE) AS day, count(*), count(DISTINCT patient_key) FROM facts
        WHERE concept IS NOT NULL AND kind <> 'demographic' GROUP BY ALL ORDER BY site, concept, day
        """
    ).fetchall():
        per_day[(site, concept)][day.isoformat()] = (count, patients)
    spans: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for site, concept, first, last in connection.sql(
        """
        SELECT site, concept, CAST(min(effective_at) AS DATE), CAST(max(effective_at) AS DATE) FROM facts
        WHERE concept IS NOT NULL AND kind <> 'demographic' GROUP BY site, concept, patient_key
        """
    ).fetchall():
        firsts, lasts = spans[(site, concept)]
        firsts.append(first.isoformat())
        lasts.append(last.isoformat())
    for (site, concept), days in per_day.items():
        ordered = sorted(days)
        shown = [day for day in ordered if days[day][1] >= k]
        firsts, lasts = spans[(site, concept)]
        sites[site].completeness[concept] = {
            "days_with_facts": len(ordered),
            "first_day": _kth(firsts, k, largest=False),
            "last_day": _kth(lasts, k, largest=True),
            "latest_days": {day: days[day][0] for day in shown[-COMPLETENESS_DAYS:]},
            "days_suppressed": len(ordered) - len(shown),
        }


def _freshness(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality], now: datetime,
               k: int) -> None:
    latest: dict[str, tuple[list[Any], list[Any]]] = defaultdict(lambda: ([], []))
    for site, latest_effective, latest_known in connection.sql(
        """
        SELECT site, CAST(max(effective_at) FILTER (WHERE kind <> 'demographic') AS DATE),
               CAST(max(known_at) AS DATE)
        FROM facts GROUP BY site, patient_key
        """
    ).fetchall():
        effective, known = latest[site]
        if latest_effective is not None:  # demographic facts take the birth date: never a freshness
            effective.append(latest_effective)
        known.append(latest_known)
    for site, (effective, known) in latest.items():
        effective_day = _kth(effective, k, largest=True)
        known_day = _kth(known, k, largest=True)
        sites[site].freshness = {
            "latest_effective_day": effective_day.isoformat() if effective_day is not None else None,
            "latest_known_day": known_day.isoformat() if known_day is not None else None,
            "days_since_latest_known": (now.date() - known_day).days if known_day is not None else None,
        }
