"""Random version histories of one result, ingested in random batches by random paths: the
training-set engine's value at random moments equals the rule read directly from the FHIR
resources, and the online vector from the store equals the offline row."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ingest.fhir_builders import observation
from vitalops.core.clock import isoformat_utc
from vitalops.features.definitions import DatasetSpec, spec_from_dict
from vitalops.features.engine import compute_features
from vitalops.features.online import features_from_store
from vitalops.ingest.chunks import normalized_chunks
from vitalops.ingest.extract_common import Context, source_version
from vitalops.ingest.normalize import resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.lake.facts import FactsStore
from vitalops.terminology import load_terminology

EFFECTIVE = datetime(2024, 5, 1, 8, tzinfo=UTC)
PSEUDONYMS = Pseudonymizer(b"version-histories")
PATIENT = PSEUDONYMS.patient_key("p1")
TERMINOLOGY = load_terminology()
RETRACTED = ("entered-in-error", "cancelled")
SPEC: DatasetSpec = spec_from_dict(
    {"name": "histories", "cohort": {"schedule": "every", "every": "4h"},
     "label": {"kind": "outcome", "outcomes": [{"kind": "encounter", "concept": "icu_stay"}], "horizon": "48h"},
     "features": [{"name": "hr_last", "kind": "measurement", "concept": "heart_rate", "agg": "last",
                   "window": "30d"}]},
    source="histories.yaml",
)


def at_minute(n: int) -> datetime:
    return EFFECTIVE + timedelta(minutes=n)


def text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Batch:
    resources: list[dict[str, Any]]
    ingested_at: datetime
    fast_path: bool  # an NDJSON file through the columnar reader, else dicts through the per-resource path


@st.composite
def histories(draw: st.DrawFn) -> list[Batch]:
    """A result's versions in the EHR's order, cut into batches ingested one after another."""
    count = draw(st.integers(1, 5))
    naming = draw(st.sampled_from(["numbers", "text", "none"]))
    if naming == "numbers":
        start = draw(st.integers(0, 12))
        gaps = draw(st.lists(st.integers(1, 5), min_size=count, max_size=count))
        ids: list[str | None] = [str(start + sum(gaps[: i + 1])) for i in range(count)]
    elif naming == "text":
        ids = list(draw(st.lists(st.sampled_from(["a", "b", "c", "v2", "v10", "x", "2a", "z9"]),
                                 min_size=count, max_size=count, unique=True)))
    else:
        ids = [None] * count
    resources, stamps = [], set()
    for position, version in enumerate(ids):
        issued = draw(st.one_of(st.none(), st.integers(-60, 600).map(at_minute)))
        updated = draw(st.one_of(st.none(), st.integers(-60, 600).map(at_minute)))
        if version is None and updated in stamps:
            updated = None  # without a versionId, lastUpdated is the version's id: one per version
        stamps.add(updated)
        status = draw(st.sampled_from(["final", "amended", "corrected", "entered-in-error"]))
        resource = observation("hr1", value=60 + position, effective=text(EFFECTIVE),
                               issued=None if issued is None else text(issued), updated="x", status=status)
        resource["meta"] = {k: v for k, v in (("versionId", version),
                                              ("lastUpdated", None if updated is None else text(updated))) if v}
        resources.append(resource)
    cuts = sorted(draw(st.sets(st.integers(1, count - 1), max_size=count - 1))) if count > 1 else []
    bounds = [0, *cuts, count]
    batches, ingested = [], at_minute(draw(st.integers(-30, 300)))
    for lower, upper in zip(bounds, bounds[1:], strict=False):
        batches.append(Batch(resources[lower:upper], ingested, draw(st.booleans())))
        ingested += timedelta(minutes=draw(st.integers(0, 240)))
    return batches


def expected_value(batches: list[Batch], moment: datetime) -> float | None:
    """The rule, read from the resources: a version is made available at its lastUpdated, else its
    batch's ingest time; a first version (a result, not a retraction) at its issued if it has one;
    none before the effective time nor before the version it follows; versions follow one another
    by number when every id is one, else by availability then id; the version current at T is the
    last one known by T."""
    versions: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for resource in batch.resources:
            key = source_version(resource)
            if key in versions:
                continue  # the same version again adds nothing
            updated = resource["meta"].get("lastUpdated")
            issued = resource.get("issued")
            retracted = resource["status"] in RETRACTED
            available = datetime.fromisoformat(updated) if updated else batch.ingested_at
            versions[key] = {
                "id": key,
                # a result cannot be known before it happened; a retraction is its own event
                "available": available if retracted else max(EFFECTIVE, available),
                "issued": None if issued is None or retracted else max(EFFECTIVE, datetime.fromisoformat(issued)),
                "value": None if retracted else float(resource["valueQuantity"]["value"]),
            }
    history = list(versions.values())
    if all(v["id"].isdigit() for v in history):
        history.sort(key=lambda v: (int(v["id"]), v["id"]))
    else:
        history.sort(key=lambda v: (v["available"], v["id"]))
    current, known = None, None
    for position, version in enumerate(history):
        own = version["issued"] or version["available"] if position == 0 else version["available"]
        known = own if known is None else max(known, own)
        if known <= moment:
            current = version
    return None if current is None else current["value"]


def ingest(batches: list[Batch], lake_root: str, folder: Path) -> None:
    store = FactsStore(lake_root)
    for number, batch in enumerate(batches):
        batch_id = f"batch-{number}"
        if batch.fast_path:
            path = folder / f"{batch_id}.ndjson"
            path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in batch.resources))
            ctx = Context("S1", PSEUDONYMS, TERMINOLOGY, isoformat_utc(batch.ingested_at))
            for chunk in normalized_chunks([path], ctx, chunk_resources=2, batch_id=batch_id):
                store.append(chunk.facts)
        else:
            result = resources_to_facts(batch.resources, site="S1", pseudonymizer=PSEUDONYMS,
                                        terminology=TERMINOLOGY, known_at_default=batch.ingested_at,
                                        batch_id=batch_id)
            store.append(result.facts)


@settings(max_examples=40, deadline=None, database=None)
@given(batches=histories(), minutes=st.lists(st.integers(-90, 1_000), min_size=1, max_size=6))
def test_training_rows_and_online_vectors_see_the_version_current_at_their_time(
    batches: list[Batch], minutes: list[int]
) -> None:
    moments = [at_minute(n) for n in minutes]
    with tempfile.TemporaryDirectory() as folder:
        lake_root = str(Path(folder) / "lake")
        ingest(batches, lake_root, Path(folder))
        facts = FactsStore(lake_root).dataset().to_table()
        index = pa.table({"patient_key": [PATIENT] * len(moments), "index_time": moments,
                          "encounter_key": pa.nulls(len(moments), pa.string()), "site": ["S1"] * len(moments)})
        offline = compute_features(facts, index, SPEC).column("hr_last").to_pylist()
        assert offline == [expected_value(batches, moment) for moment in moments]
        for moment, value in zip(moments, offline, strict=True):
            assert features_from_store(SPEC, lake_root, PATIENT, at=moment)["hr_last"] == value
