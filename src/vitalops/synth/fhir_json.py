"""Small builders for FHIR R4 JSON fragments: times with a site's UTC offset, meta, codings, ids.

Dicts are built in a fixed key order so that orjson writes the same bytes for the same seed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from vitalops.synth.codes import SITE_TAG_SYSTEM, UCUM

JSON = dict[str, Any]

HOUR = 3600
DAY = 86400
YEAR = 365.25 * DAY


def site_timezone(offset_minutes: int) -> timezone:
    """A fixed UTC offset (the generator does not model daylight saving)."""
    return timezone(timedelta(minutes=offset_minutes))


def fhir_instant(moment: int, tz: timezone) -> str:
    """``moment`` (epoch seconds) as a FHIR dateTime/instant with seconds and the site's offset."""
    return datetime.fromtimestamp(moment, tz).isoformat()


def meta(version: str, last_updated: int, tz: timezone, site: str) -> JSON:
    """``meta`` with versionId, lastUpdated and the site tag that ingest reads the site from."""
    return {
        "versionId": version,
        "lastUpdated": fhir_instant(last_updated, tz),
        "tag": [{"system": SITE_TAG_SYSTEM, "code": site}],
    }


def coding(system: str, code: str, display: str) -> JSON:
    return {"system": system, "code": code, "display": display}


def concept(system: str, code: str, display: str) -> JSON:
    """A CodeableConcept with one coding and the display as text."""
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def quantity(value: float, unit_text: str, ucum: str) -> JSON:
    return {"value": value, "unit": unit_text, "system": UCUM, "code": ucum}


def reference(resource_type: str, resource_id: str) -> JSON:
    return {"reference": f"{resource_type}/{resource_id}"}


class IdMint:
    """Resource ids shaped like UUIDs, drawn from their own random stream so ids never shift the clinic."""

    _BATCH = 256

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._pool = b""
        self._at = 0

    def new(self) -> str:
        """A fresh id, unique with overwhelming probability."""
        if self._at >= len(self._pool):
            self._pool = self._rng.bytes(16 * self._BATCH)
            self._at = 0
        raw = self._pool[self._at : self._at + 16].hex()
        self._at += 16
        return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:32]}"
