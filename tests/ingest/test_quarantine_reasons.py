"""Quarantine and skip reasons name the rule and the element, never the value that broke it: a
feed puts free text (a name, an MRN) anywhere, and reasons reach batch counts, the command line
and the quality report. The value stays only in the quarantined input itself."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.ingest.fhir_builders import SITE_TAG, observation, patient
from vitalops.ingest.chunks import normalized_chunks
from vitalops.ingest.extract_common import Context
from vitalops.ingest.normalize import NormalizeResult, resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.terminology import load_terminology

CANARY = "ZZCANARY-NAME-7731"
TERMINOLOGY = load_terminology()
PSEUDONYMS = Pseudonymizer(b"reasons-test-key")
AT = datetime(2025, 1, 1, tzinfo=UTC)


def _broken() -> dict[str, dict[str, Any]]:
    """One resource per rule whose input value could be echoed, keyed by the rule it breaks."""
    quantity = {"value": 80, "unit": CANARY, "code": CANARY}
    return {
        "unit.unknown": observation("u1", valueQuantity=quantity),
        "unit.unconvertible": observation("u2", code="8480-6", valueQuantity={"value": 1, "code": "kg"}),
        "resource.unknown_type": {"resourceType": CANARY, "id": "x1"},
        "site.unregistered": {**patient("p2"), "meta": {"tag": [{"system": SITE_TAG, "code": CANARY}]}},
        "value.not_numeric": {**observation("v1", value=None), f"value{CANARY}": CANARY},
    }


def _texts(result: NormalizeResult) -> list[str]:
    return [q.reason for q in result.quarantined] + [q.rule for q in result.quarantined] + list(result.skipped)


def test_each_rule_is_named_without_the_value() -> None:
    broken = _broken()
    result = resources_to_facts(list(broken.values()), site="north", pseudonymizer=PSEUDONYMS,
                                terminology=TERMINOLOGY, known_at_default=AT, sites={"north": "north"})
    by_line = {q.line: q for q in result.quarantined}
    for line, rule in enumerate(broken, start=1):
        assert by_line[line].rule == rule
    assert not any(CANARY in text or "CANARY" in text for text in _texts(result))
    reasons = {q.rule: q.reason for q in result.quarantined}
    assert reasons["unit.unknown"] == "valueQuantity.unit: the unit is not a valid UCUM unit (concept heart_rate)"
    assert reasons["site.unregistered"] == "meta.tag (site): the site code is not a registered site"
    assert reasons["value.not_numeric"].startswith("value[x] of numeric concept heart_rate")


def test_an_unknown_value_type_is_skipped_under_a_generic_name() -> None:
    unmapped = {**observation("s1", code="12345-6", value=None), f"value{CANARY}": 1}
    result = resources_to_facts([unmapped], site="north", pseudonymizer=PSEUDONYMS, terminology=TERMINOLOGY,
                                known_at_default=AT)
    assert result.skipped == {"value type value[x] not ingested": 1}


@pytest.mark.usefixtures("implementation")
def test_the_fast_path_names_rules_the_same_way(tmp_path: Path) -> None:
    lines = [observation(f"f{i}") for i in range(5)] + [r for r in _broken().values()]
    file = tmp_path / "Observation.ndjson"
    file.write_bytes(b"\n".join(orjson.dumps(r) for r in lines) + b"\n")
    ctx = Context("north", PSEUDONYMS, TERMINOLOGY, "2025-01-01T00:00:00Z", {"north": "north"})
    (result,) = normalized_chunks([file], ctx, chunk_resources=100, batch_id="b1")
    assert {q.rule for q in result.quarantined} == set(_broken())
    assert not any("CANARY" in text for text in _texts(result))
