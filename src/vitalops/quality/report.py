"""The data-quality report: per batch and site, over the facts and quarantine tables.

Rules (stable ids, each counted per site):
- ``required.*``, ``unit.*``, ``date.*`` and every other quarantine rule: records rejected at ingest;
- ``range.implausible``: numeric facts outside their concept's plausible range (terminology);
- ``date.future``: facts that happen after the batch ran (or after now, without a batch);
- ``date.impossible``: facts before 1900, or before the patient's birth;
- ``reference.unknown_patient``: patients with clinical facts but no Patient resource ingested
  (kept, not quarantined: bulk exports are not ordered);
- ``code.unmapped``: facts whose code maps to no concept, listed by code system and code;
- ``duplicates``: facts repeated in the input or already in the lake;
plus completeness (facts per concept and day) and freshness (latest effective and known times).
No patient data appears: counts, concepts, codes and times of aggregates only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import orjson
import pyarrow.compute as pc
from sqlalchemy import select

from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import as_utc, utcnow
from vitalops.db import Database
from vitalops.db.tables.ingest import IngestBatchRow
from vitalops.errors import NotFound
from vitalops.lake.facts import FactsStore
from vitalops.lake.quarantine import QuarantineStore
from vitalops.terminology import load_terminology

EARLIEST_PLAUSIBLE = datetime(1900, 1, 1).isoformat() + "+00:00"
COMPLETENESS_DAYS = 14  # days of per-day counts shown per concept (the latest days with data)
TOP_UNMAPPED = 20


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
    completeness: dict[str, dict[str, Any]] = field(default_factory=dict)
    freshness: dict[str, Any] = field(default_factory=dict)


@dataclass
class QualityReport:
    """The report; ``to_dict()`` is JSON-safe."""

    batch_id: str | None
    generated_at: datetime
    duplicates: int
    sites: list[SiteQuality]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quality_report(
    database: Database, lake_root: str, *, batch_id: str | None = None, principal: Principal | None = None
) -> QualityReport:
    """Compute the report over the whole lake or one batch. Raises NotFound for an unknown batch and
    PermissionDenied when ``principal`` is given and lacks QUALITY_READ."""
    if principal is not None:
        authorize(
            database, principal, Permission.QUALITY_READ, object_type="quality_report", object_id=batch_id or "all"
        )
    now = utcnow()
    with database.session() as session:
        query = select(IngestBatchRow)
        if batch_id is not None:
            query = query.where(IngestBatchRow.id == batch_id)
        batches = list(session.scalars(query))
    if batch_id is not None and not batches:
        raise NotFound(f"ingest batch {batch_id} does not exist")
    duplicates = sum(int(orjson.loads(b.counts_json).get("duplicates", 0)) for b in batches)
    cutoff = as_utc(batches[0].started_at) if batch_id is not None else now
    connection = duckdb.connect()
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
        _unmapped(connection, sites)
        _completeness(connection, sites)
        _freshness(connection, sites, now)
    finally:
        connection.close()
    return QualityReport(batch_id, now, duplicates, [sites[name] for name in sorted(sites)])


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


def _unmapped(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality]) -> None:
    rows = connection.sql(
        """
        SELECT site, source_type, code_system, code, count(*) AS n FROM facts
        WHERE concept IS NULL AND code IS NOT NULL GROUP BY ALL ORDER BY n DESC, code
        """
    ).fetchall()
    for site, source_type, system, code, count in rows:
        if len(sites[site].unmapped_codes) < TOP_UNMAPPED:
            sites[site].unmapped_codes.append(
                {"source_type": source_type, "code_system": system, "code": code, "facts": count}
            )


def _completeness(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality]) -> None:
    per_day: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for site, concept, day, count in connection.sql(
        """
        SELECT site, concept, CAST(effective_at AS DATE) AS day, count(*) FROM facts
        WHERE concept IS NOT NULL GROUP BY ALL ORDER BY site, concept, day
        """
    ).fetchall():
        per_day[(site, concept)][day.isoformat()] = count
    for (site, concept), days in per_day.items():
        ordered = sorted(days)
        sites[site].completeness[concept] = {
            "days_with_facts": len(ordered),
            "first_day": ordered[0],
            "last_day": ordered[-1],
            "latest_days": {day: days[day] for day in ordered[-COMPLETENESS_DAYS:]},
        }


def _freshness(connection: duckdb.DuckDBPyConnection, sites: dict[str, SiteQuality], now: datetime) -> None:
    for site, latest_effective, latest_known in connection.sql(
        "SELECT site, CAST(max(effective_at) AS TIMESTAMP), CAST(max(known_at) AS TIMESTAMP) FROM facts GROUP BY site"
    ).fetchall():
        # TIMESTAMP (naive) in a UTC session: fetching TIMESTAMPTZ would need pytz.
        latest_effective = as_utc(latest_effective) if latest_effective is not None else None
        latest_known = as_utc(latest_known) if latest_known is not None else None
        lag = now - latest_known if latest_known is not None else None
        sites[site].freshness = {
            "latest_effective_at": latest_effective,
            "latest_known_at": latest_known,
            "hours_since_latest_known": round(lag / timedelta(hours=1), 1) if lag is not None else None,
        }
