"""An amended result is known when the amendment was made, not when the original was issued: a
training row between the two sees the original value, a row after sees the amendment, whichever
path ingests the versions (the columnar fast path on the C scanner or its msgspec twin, the
per-resource path of a Bundle) and whether they come in one batch or two."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from tests.ingest.fhir_builders import observation
from vitalops.auth import SYSTEM
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.features.definitions import DatasetSpec, spec_from_dict
from vitalops.features.engine import compute_features
from vitalops.features.online import features_from_store
from vitalops.ingest.columnar_observations import ColumnarObservations
from vitalops.ingest.extract_common import Context
from vitalops.ingest.normalize import ChunkNormalization
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.ingest.service import ingest_paths
from vitalops.lake.facts import FactsStore
from vitalops.terminology import load_terminology

ISSUED = "2024-05-01T09:00:00Z"
AMENDED = "2024-05-01T15:00:00Z"


def spec() -> DatasetSpec:
    return spec_from_dict(
        {"name": "amended", "cohort": {"schedule": "every", "every": "4h"},
         "label": {"kind": "outcome", "outcomes": [{"kind": "encounter", "concept": "icu_stay"}], "horizon": "48h"},
         "features": [{"name": "hr_last", "kind": "measurement", "concept": "heart_rate", "agg": "last",
                       "window": "30d"}]},
        source="amended.yaml",
    )


def versions(original_id: str = "1", amended_id: str = "2") -> list[dict[str, Any]]:
    """The original result (issued 09:00) and its amendment (same issued, made at 15:00)."""
    original = observation("hr1", value=80, effective="2024-05-01T08:00:00Z", issued=ISSUED, updated=ISSUED)
    original["meta"]["versionId"] = original_id
    amended = observation("hr1", value=120, effective="2024-05-01T08:00:00Z", issued=ISSUED, updated=AMENDED,
                          status="amended")
    amended["meta"]["versionId"] = amended_id
    return [original, amended]


def write(path: Path, resources: list[dict[str, Any]], *, bundle: bool) -> Path:
    if bundle:
        document = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
        path.write_bytes(orjson.dumps(document))
    else:
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path


def heart_rate_at(lake_root: str, moments: list[datetime]) -> list[float | None]:
    """The training-set value at each moment (the DuckDB engine), checked against the online vector."""
    facts = FactsStore(lake_root).dataset().to_table()
    (patient,) = set(facts.column("patient_key").to_pylist())
    index = pa.table({"patient_key": [patient] * len(moments), "index_time": moments,
                      "encounter_key": pa.nulls(len(moments), pa.string()), "site": ["s1"] * len(moments)})
    offline = compute_features(facts, index, spec()).column("hr_last").to_pylist()
    online = [features_from_store(spec(), lake_root, patient, at=moment)["hr_last"] for moment in moments]
    assert online == offline
    return offline


MOMENTS = [datetime(2024, 5, 1, h, m, tzinfo=UTC) for h, m in ((8, 30), (10, 0), (14, 59), (15, 0), (20, 0))]
EXPECTED = [None, 80.0, 80.0, 120.0, 120.0]


@pytest.mark.parametrize("batches", ["one batch", "two batches"])
def test_amended_observation_through_the_fast_path(
    home: Settings, database: Database, tmp_path: Path, implementation: str, batches: str
) -> None:
    resources = versions()
    ctx = Context("s1", Pseudonymizer(b"k"), load_terminology(), "2025-01-01T00:00:00Z")
    reader = ColumnarObservations(ctx)
    reader.add_lines(ChunkNormalization(ctx), "x.ndjson", 1, [orjson.dumps(r) + b"\n" for r in resources])
    assert reader.taken == 2  # both versions really take the fast path
    if batches == "one batch":
        ingest_paths(database, SYSTEM, [write(tmp_path / "obs.ndjson", resources, bundle=False)], site="s1")
    else:
        ingest_paths(database, SYSTEM, [write(tmp_path / "monday.ndjson", resources[:1], bundle=False)], site="s1")
        ingest_paths(database, SYSTEM, [write(tmp_path / "wednesday.ndjson", resources[1:], bundle=False)],
                     site="s1")
    assert heart_rate_at(home.lake_root, MOMENTS) == EXPECTED


@pytest.mark.parametrize("batches", ["one batch", "two batches"])
def test_amended_observation_through_the_per_resource_path(
    home: Settings, database: Database, tmp_path: Path, batches: str
) -> None:
    resources = versions()
    if batches == "one batch":
        ingest_paths(database, SYSTEM, [write(tmp_path / "bundle.json", resources, bundle=True)], site="s1")
    else:
        ingest_paths(database, SYSTEM, [write(tmp_path / "monday.json", resources[:1], bundle=True)], site="s1")
        ingest_paths(database, SYSTEM, [write(tmp_path / "wednesday.json", resources[1:], bundle=True)], site="s1")
    assert heart_rate_at(home.lake_root, MOMENTS) == EXPECTED


@pytest.mark.parametrize(("original_id", "amended_id"), [("9", "10"), ("2", "10")])
def test_version_ten_supersedes_version_nine(
    home: Settings, database: Database, tmp_path: Path, original_id: str, amended_id: str
) -> None:
    # Both versions were made available at the same moment (one lastUpdated, no issued): the higher
    # version number is the one current from then on, whichever comes first in the file.
    resources = versions(original_id, amended_id)[::-1]
    for resource in resources:
        del resource["issued"]
        resource["meta"]["lastUpdated"] = ISSUED
    ingest_paths(database, SYSTEM, [write(tmp_path / "obs.ndjson", resources, bundle=False)], site="s1")
    assert heart_rate_at(home.lake_root, MOMENTS) == [None, 120.0, 120.0, 120.0, 120.0]


def test_an_amendment_stamped_before_the_original_was_known_is_known_with_it(
    home: Settings, database: Database, tmp_path: Path
) -> None:
    # Version 2 (Wednesday's batch) says lastUpdated 09:30, before version 1 (Monday's batch) became
    # known at 10:00: version 2 is known at 10:00, never earlier, and version 1 never comes back.
    resources = versions()
    for resource, updated in zip(resources, ("2024-05-01T10:00:00Z", "2024-05-01T09:30:00Z"), strict=True):
        del resource["issued"]
        resource["meta"]["lastUpdated"] = updated
    ingest_paths(database, SYSTEM, [write(tmp_path / "monday.json", resources[:1], bundle=True)], site="s1")
    ingest_paths(database, SYSTEM, [write(tmp_path / "wednesday.ndjson", resources[1:], bundle=False)], site="s1")
    moments = [datetime(2024, 5, 1, h, m, tzinfo=UTC) for h, m in ((9, 45), (10, 0), (20, 0))]
    assert heart_rate_at(home.lake_root, moments) == [None, 120.0, 120.0]
    (current,) = FactsStore(home.lake_root).for_patients(
        FactsStore(home.lake_root).dataset().to_table().column("patient_key").to_pylist()
    ).to_pylist()
    assert (current["source_version"], current["known_at"]) == ("2", datetime(2024, 5, 1, 10, tzinfo=UTC))
