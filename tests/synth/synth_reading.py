"""Reading the synthetic hospital's output in tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson


def read_ndjson(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as lines:
        for line in lines:
            yield orjson.loads(line)


def moment(text: str) -> float:
    """Epoch seconds of a FHIR dateTime with an offset (or a ``Z``)."""
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None, text
    return parsed.timestamp()


def code_of(resource: dict[str, Any]) -> str:
    return resource["code"]["coding"][0]["code"]


def site_of(resource: dict[str, Any]) -> str:
    tags = [t["code"] for t in resource["meta"]["tag"] if t["system"] == "https://vitalops.dev/fhir/site"]
    assert len(tags) == 1
    return tags[0]
