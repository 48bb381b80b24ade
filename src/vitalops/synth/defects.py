"""Realistic feed defects, planted on request into one site's export, so that a demo or a test
sees the quarantine and the quality report at work on otherwise clean synthetic data.

Each defect copies a real record of the site and breaks it the way EHR interfaces break:

| defect | what arrives | what the platform does |
|---|---|---|
| ``truncated_line`` | an Observation line cut off mid-transmission | quarantined: not JSON |
| ``unconvertible_unit`` | a glucose in ``mg`` (a mass, not a concentration) | quarantined: no conversion |
| ``missing_value`` | an Observation with neither a value nor a dataAbsentReason | quarantined |
| ``no_timezone`` | an effective time without a time zone | quarantined |
| ``implausible_value`` | a heart rate of 720 /min (a keying error) | lands, counted as out of range |
| ``local_code`` | a Condition coded only in a local code system | lands without its code, counted (``code.absent``) |

Defective records get ids of their own (``<id>-defect-<n>``), so they never collide with the
clean records. Same seed, same defects.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from vitalops.synth.codes import LOINC

SITE_TAG_SYSTEM = "https://vitalops.dev/fhir/site"
DEFECTS_PER_KIND = 3
DEFECT_KINDS = (
    "truncated_line", "unconvertible_unit", "missing_value", "no_timezone", "implausible_value", "local_code",
)
HEART_RATE, GLUCOSE = "8867-4", "2345-7"


def _site_of(resource: dict[str, Any]) -> str | None:
    for tag in resource.get("meta", {}).get("tag", []):
        if tag.get("system") == SITE_TAG_SYSTEM:
            return str(tag.get("code"))
    return None


def _code_of(resource: dict[str, Any]) -> str | None:
    for coding in resource.get("code", {}).get("coding", []):
        if coding.get("system") == LOINC:
            return str(coding.get("code"))
    return None


def _templates(path: Path, site: str, wanted: set[str] | None, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` of ``site``'s records from ``path`` (with one of the ``wanted`` LOINC codes)."""
    found: list[dict[str, Any]] = []
    with path.open("rb") as handle:
        for line in handle:
            resource = orjson.loads(line)
            if _site_of(resource) == site and (wanted is None or _code_of(resource) in wanted):
                found.append(resource)
                if len(found) >= limit:
                    break
    return found


def _renamed(resource: dict[str, Any], number: int) -> dict[str, Any]:
    copy: dict[str, Any] = orjson.loads(orjson.dumps(resource))
    copy["id"] = f"{resource['id']}-defect-{number}"
    copy.setdefault("meta", {})["versionId"] = "1"
    return copy


def _broken_observations(pool: list[dict[str, Any]], rng: np.random.Generator) -> Iterator[tuple[str, bytes]]:
    by_code: dict[str | None, list[dict[str, Any]]] = {}
    for resource in pool:
        by_code.setdefault(_code_of(resource), []).append(resource)
    number = 0
    for kind in DEFECT_KINDS[:5]:
        for _ in range(DEFECTS_PER_KIND):
            number += 1
            source = {"unconvertible_unit": GLUCOSE, "implausible_value": HEART_RATE}.get(kind)
            candidates = by_code.get(source) or pool
            resource = _renamed(candidates[int(rng.integers(len(candidates)))], number)
            if kind == "truncated_line":
                encoded = orjson.dumps(resource)
                yield kind, encoded[: len(encoded) // 2]
                continue
            if kind == "unconvertible_unit":
                resource["valueQuantity"]["unit"] = resource["valueQuantity"]["code"] = "mg"
            elif kind == "missing_value":
                resource.pop("valueQuantity", None)
                resource.pop("component", None)
            elif kind == "no_timezone":
                resource["effectiveDateTime"] = resource["effectiveDateTime"][:19]
            elif kind == "implausible_value":
                resource["valueQuantity"]["value"] = 720
            yield kind, orjson.dumps(resource)


def plant_defects(out_dir: Path, site: str, seed: int) -> dict[str, int]:
    """Append the defects of the module docstring to ``site``'s records in ``out_dir``; returns counts per kind."""
    rng = np.random.default_rng([seed, 20_261_123])
    counts = dict.fromkeys(DEFECT_KINDS, 0)
    pool = _templates(out_dir / "Observation.ndjson", site, {HEART_RATE, GLUCOSE}, limit=200)
    lines: list[bytes] = []
    for kind, line in _broken_observations(pool, rng):
        lines.append(line)
        counts[kind] += 1
    with (out_dir / "Observation.ndjson").open("ab") as handle:
        handle.write(b"\n".join(lines) + b"\n")
    conditions = _templates(out_dir / "Condition.ndjson", site, None, limit=DEFECTS_PER_KIND)
    local: list[bytes] = []
    for number, condition in enumerate(conditions, start=1):
        resource = _renamed(condition, 100 + number)
        resource["code"] = {
            "coding": [{"system": f"https://{site}.hospital.example/CodeSystem/diagnoses", "code": f"DX{number:04d}"}]
        }
        local.append(orjson.dumps(resource))
        counts["local_code"] += 1
    if local:
        with (out_dir / "Condition.ndjson").open("ab") as handle:
            handle.write(b"\n".join(local) + b"\n")
    return counts
