"""De-identify a FHIR export: read resources, scrub each one, write NDJSON one file per type.

``deidentify_path`` does the work; ``run_deidentification`` is the governed entry point for the
command line and the API: it checks the DATA_DEID permission and records a ``deid.run`` audit
event holding counts only.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import IO

import orjson

from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import utcnow
from vitalops.core.ids import new_id
from vitalops.db import Database
from vitalops.deid.report import DeidReport
from vitalops.deid.rules import load_rules
from vitalops.deid.scrubber import Scrubber
from vitalops.errors import InvalidInput
from vitalops.fhir.readers import iter_resources
from vitalops.sites import list_sites


def deidentify_path(
    in_path: Path,
    out_dir: Path,
    *,
    key: bytes,
    dates: str = "shift",
    rules: Path | None = None,
    as_of: date | None = None,
    site_tags: frozenset[str] | None = None,
) -> DeidReport:
    """De-identify every resource under ``in_path`` into ``out_dir/<Type>.ndjson`` by the scrub rules.

    ``dates`` is ``year`` (the year only: HIPAA Safe Harbor), ``shift`` (per-patient offset, day
    precision; not Safe Harbor) or ``shift-time`` (the same with the time of day; not Safe Harbor).
    ``as_of`` is the day ages are reckoned on for the over-89 grouping (today by default);
    ``site_tags`` the registered sites' tag values, the only site tag codes kept. Unreadable input, unlisted
    resource types and resources with unknown modifier extensions are left out and counted.
    Raises InvalidInput when ``in_path`` is missing, ``out_dir`` is not empty, or the rules are bad.
    """
    if not in_path.exists():
        raise InvalidInput(f"input {in_path.name} does not exist")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InvalidInput(f"output folder {out_dir.name} must be new or empty")
    scrub_rules = load_rules(rules)
    report = DeidReport(dates=dates, rules=scrub_rules.source)
    scrubber = Scrubber(scrub_rules, key=key, dates=dates, as_of=as_of or utcnow().date(), report=report,
                        site_tags=site_tags)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, IO[bytes]] = {}
    try:
        for record in iter_resources(in_path):
            report.read += 1
            if record.resource is None:
                report.skipped["unreadable"] += 1
                continue
            scrubbed = scrubber.scrub(record.resource)
            if scrubbed is None:
                continue
            resource_type = scrubbed["resourceType"]
            handle = outputs.get(resource_type)
            if handle is None:
                handle = outputs[resource_type] = (out_dir / f"{resource_type}.ndjson").open("wb")
            handle.write(orjson.dumps(scrubbed) + b"\n")
            report.written += 1
            report.written_by_type[resource_type] += 1
    finally:
        for handle in outputs.values():
            handle.close()
    return report


def run_deidentification(
    database: Database,
    principal: Principal,
    in_path: Path,
    out_dir: Path,
    *,
    key: bytes,
    dates: str = "shift",
    rules: Path | None = None,
) -> tuple[str, DeidReport]:
    """De-identify as ``principal`` and audit it; returns the run id and the report.

    Raises PermissionDenied (audited) without DATA_DEID, and whatever ``deidentify_path`` raises.
    """
    run_id = new_id("deid")
    authorize(database, principal, Permission.DATA_DEID, object_type="deid_run", object_id=run_id)
    with database.session() as session:
        site_tags = frozenset(tag for site in list_sites(session) for tag in site.tag_values)
    report = deidentify_path(in_path, out_dir, key=key, dates=dates, rules=rules, site_tags=site_tags)
    summary = report.to_dict()
    payload = {
        name: summary[name]
        for name in ("read", "written", "skipped", "skipped_by_reason", "written_by_type", "actions", "dates",
                     "safe_harbor_dates", "rules")
    }
    with database.session() as session:
        append(
            session, actor=principal, action="deid.run", object_type="deid_run", object_id=run_id, payload=payload
        )
    return run_id, report
