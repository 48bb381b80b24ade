"""De-identify a FHIR export: read resources, scrub each one, write NDJSON one file per type."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import IO

import orjson

from vitalops.core.clock import utcnow
from vitalops.deid.report import DeidReport
from vitalops.deid.rules import load_rules
from vitalops.deid.scrubber import Scrubber
from vitalops.errors import InvalidInput
from vitalops.fhir.readers import iter_resources


def deidentify_path(
    in_path: Path,
    out_dir: Path,
    *,
    key: bytes,
    dates: str = "shift",
    rules: Path | None = None,
    as_of: date | None = None,
) -> DeidReport:
    """De-identify every resource under ``in_path`` into ``out_dir/<Type>.ndjson`` by the scrub rules.

    ``dates`` is ``shift`` (per-patient offset) or ``year`` (truncate). ``as_of`` is the day ages
    are reckoned on for the over-89 grouping (today by default). Unreadable input, unlisted
    resource types and resources with unknown modifier extensions are left out and counted.
    Raises InvalidInput when ``in_path`` is missing, ``out_dir`` is not empty, or the rules are bad.
    """
    if not in_path.exists():
        raise InvalidInput(f"input {in_path.name} does not exist")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InvalidInput(f"output folder {out_dir.name} must be new or empty")
    scrub_rules = load_rules(rules)
    report = DeidReport(dates=dates, rules=scrub_rules.source)
    scrubber = Scrubber(scrub_rules, key=key, dates=dates, as_of=as_of or utcnow().date(), report=report)
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
