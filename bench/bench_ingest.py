"""Bulk ingest of Observation NDJSON, end to end (read, parse, normalize, write Delta), beside bare
``orjson.loads`` over the same lines and fhir.resources R4B validation of a sample, in one run, for
each of three shapes of export line:

* ``meta``: the bench's own lines, with ``meta.versionId``, ``meta.lastUpdated`` and a site tag;
* ``no-meta``: no ``meta`` at all and ``urn:uuid`` references (Synthea-shaped, as many EHR exports
  are): the version of such a resource is a hash of its content and it is known at the ingest time;
* ``components``: panels (blood pressure, and a vital-signs panel whose components are sometimes
  absent with a ``dataAbsentReason``), with ``interpretation``, ``effectiveDateTime`` and ``issued``
  and no ``meta``.

Run: .venv/bin/python bench/bench_ingest.py [--observations N] [--repeats R] [--shapes meta,no-meta,components]
The machine is shared: ingest and bare orjson are measured alternately, R times, and the ratios
of each pair are printed with their median, per shape. Beside the end-to-end figure, each run times
reading and normalizing the same file into facts tables with nothing written (the part the
Observation reader decides; the rest is the writes: Delta, the online store, the batch rows).
Targets (ARCHITECTURE.md): at least 0.5x bare orjson for each shape; at least 20x fhir.resources.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from _results import record

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITALS = [  # code, display, unit, low, high
    ("8867-4", "Heart rate", "/min", 50, 130),
    ("9279-1", "Respiratory rate", "/min", 10, 30),
    ("8310-5", "Body temperature", "Cel", 36.0, 39.5),
    ("8310-5", "Body temperature", "[degF]", 96.8, 103.0),
    ("2708-6", "Oxygen saturation", "%", 88, 100),
    ("29463-7", "Body weight", "kg", 45, 120),
    ("2160-0", "Creatinine", "mg/dL", 0.5, 3.0),
    ("2160-0", "Creatinine", "umol/L", 40, 260),
    ("2345-7", "Glucose", "mg/dL", 60, 250),
    ("2524-7", "Lactate", "mmol/L", 0.5, 5.0),
]
SAMPLE_FOR_MODELS = 2_000
SITES = ("site0", "site1", "site2")
SHAPES = ("meta", "no-meta", "components")
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def observation(rng: random.Random, index: int, start: datetime) -> dict:
    """One Observation shaped like an EHR bulk export line (site tag, versions, encounter, issued)."""
    taken = start + timedelta(minutes=index * 7)
    common = {
        "resourceType": "Observation",
        "id": f"obs-{index}",
        "meta": {
            "versionId": "1",
            "lastUpdated": (taken + timedelta(minutes=30)).isoformat(),
            "tag": [{"system": "https://vitalops.dev/fhir/site", "code": SITES[index % len(SITES)]}],
        },
        "status": "final",
        "subject": {"reference": f"Patient/pt-{index % 5_000}"},
        "encounter": {"reference": f"Encounter/enc-{index % 20_000}"},
        "effectiveDateTime": taken.isoformat(),
        "issued": (taken + timedelta(minutes=20)).isoformat(),
    }
    if index % 6 == 0:
        return {
            **common,
            "category": [
                {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
                    ]
                }
            ],
            "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
            "component": [
                {
                    "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                    "valueQuantity": {"value": rng.randint(90, 170), "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
                },
                {
                    "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                    "valueQuantity": {"value": rng.randint(50, 100), "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
                },
            ],
        }
    code, display, unit, low, high = VITALS[index % len(VITALS)]
    return {
        **common,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs" if index % 2 else "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "valueQuantity": {"value": round(rng.uniform(low, high), 1), "unit": unit, "system": UCUM, "code": unit},
    }


def synthea_observation(rng: random.Random, index: int, start: datetime) -> dict:
    """One Observation as Synthea (and many EHR exports) write them: no ``meta``, ``urn:uuid``
    references, displays."""
    taken = start + timedelta(minutes=index * 7)
    code, display, unit, low, high = VITALS[index % len(VITALS)]
    kind = "vital-signs" if index % 2 else "laboratory"
    return {
        "resourceType": "Observation",
        "id": f"{index:08x}-5b1a-4c2e-9d3f-{index * 7919 % 10**12:012d}",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": kind, "display": kind}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"urn:uuid:{index % 5_000:08x}-0000-4000-8000-000000000000"},
        "encounter": {"reference": f"urn:uuid:{index % 20_000:08x}-1111-4000-8000-000000000000"},
        "effectiveDateTime": taken.isoformat(),
        "issued": (taken + timedelta(minutes=20)).isoformat(timespec="milliseconds"),
        "valueQuantity": {"value": round(rng.uniform(low, high), 1), "unit": unit, "system": UCUM, "code": unit},
    }


def panel_observation(rng: random.Random, index: int, start: datetime) -> dict:
    """One panel Observation: components only (no value of its own), ``issued``, an interpretation,
    no ``meta``; every third vital-signs panel has a component absent with a ``dataAbsentReason``."""
    taken = start + timedelta(minutes=index * 7)
    common = {
        "resourceType": "Observation",
        "id": f"panel-{index}",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
        "subject": {"reference": f"Patient/pt-{index % 5_000}"},
        "encounter": {"reference": f"Encounter/enc-{index % 20_000}"},
        "effectiveDateTime": taken.isoformat(),
        "issued": (taken + timedelta(minutes=5)).isoformat(),
        "interpretation": [{"coding": [{"system": INTERPRETATION, "code": "N"}]}],
    }

    def component(code: str, unit: str, low: float, high: float) -> dict:
        quantity = {"value": round(rng.uniform(low, high), 1), "unit": unit, "system": UCUM, "code": unit}
        return {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": quantity}

    if index % 2 == 0:
        return {
            **common,
            "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
            "component": [component("8480-6", "mm[Hg]", 90, 170), component("8462-4", "mm[Hg]", 50, 100)],
        }
    components = [
        component("8867-4", "/min", 50, 130),
        component("9279-1", "/min", 10, 30),
        component("2708-6", "%", 88, 100),
    ]
    if index % 3 == 0:
        components[2] = {
            "code": components[2]["code"],
            "dataAbsentReason": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "not-performed"}
                ]
            },
        }
    return {
        **common,
        "code": {"coding": [{"system": LOINC, "code": "85353-1"}], "text": "Vital signs panel"},
        "component": components,
    }


MAKERS = {"meta": observation, "no-meta": synthea_observation, "components": panel_observation}


def write_ndjson(path: Path, count: int, shape: str = "meta") -> list[bytes]:
    rng = random.Random(7)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    make = MAKERS[shape]
    lines = [orjson.dumps(make(rng, i, start)) for i in range(count)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def bare_orjson(lines: list[bytes]) -> float:
    began = time.perf_counter()
    for line in lines:
        orjson.loads(line)
    return time.perf_counter() - began


def fhir_resources_rate(lines: list[bytes]) -> float:
    """Resources/s of fhir.resources R4B validation, measured on a sample of SAMPLE_FOR_MODELS lines."""
    from fhir.resources.R4B.observation import Observation

    sample = lines[:: max(1, len(lines) // SAMPLE_FOR_MODELS)][:SAMPLE_FOR_MODELS]
    began = time.perf_counter()
    for line in sample:
        Observation.model_validate(orjson.loads(line))
    return len(sample) / (time.perf_counter() - began)


def prepare_database(work: Path) -> object:
    """A migrated database in a fresh home, and a first tiny ingest so that the process is warm,
    as a server or a scheduled ingest worker is (the UCUM unit registry takes most of a second to
    build once per process). Prints that cold start separately."""
    from vitalops.auth import SYSTEM
    from vitalops.core.settings import get_settings, write_secrets_file
    from vitalops.db import Database
    from vitalops.db.migrate import upgrade
    from vitalops.ingest.service import ingest_paths
    from vitalops.sites import create_site

    home = work / "home"
    os.environ["VITALOPS_HOME"] = str(home)
    write_secrets_file(home)
    get_settings.cache_clear()
    database = Database(f"sqlite:///{home / 'vitalops.db'}")
    upgrade(database)
    with database.session() as session:  # the feed's site tags name registered sites
        for code in SITES:
            create_site(session, SYSTEM, code, tag_values=[code])
    warm_path = work / "warm.ndjson"
    warm_path.write_bytes(
        b"\n".join(
            orjson.dumps(observation(random.Random(1), i, datetime(2020, 1, 1, tzinfo=UTC)))
            for i in range(len(VITALS) * 6)
        )
    )
    cold_began = time.perf_counter()
    ingest_paths(database, SYSTEM, [warm_path])
    print(f"cold start (unit registry, terminology, first tiny batch): {time.perf_counter() - cold_began:.2f} s")
    return database


def end_to_end(database: object, path: Path, lake_root: Path) -> tuple[float, object]:
    """Seconds to ingest ``path`` into a fresh lake: read, parse, normalize, write Delta, batch row
    and audit events."""
    from vitalops.auth import SYSTEM
    from vitalops.ingest.service import ingest_paths

    began = time.perf_counter()
    report = ingest_paths(database, SYSTEM, [path], lake_root=str(lake_root))  # type: ignore[arg-type]
    return time.perf_counter() - began, report


def normalize_only(path: Path) -> float:
    """Seconds to read and normalize ``path`` into facts tables (the fast path and the build of
    each chunk, as ingest does them) with nothing written: the part of ingest the reader decides."""
    from vitalops.ingest.chunks import build_chunk, pending_chunks
    from vitalops.ingest.extract_common import Context
    from vitalops.ingest.pseudonym import Pseudonymizer
    from vitalops.ingest.service import DEFAULT_CHUNK_RESOURCES
    from vitalops.terminology import load_terminology

    terminology = load_terminology()
    ctx = Context(
        "default",
        Pseudonymizer(b"bench-key"),
        terminology,
        "2025-01-01T00:00:00.000000Z",
        {code: code for code in SITES},
    )
    began = time.perf_counter()
    for chunk in pending_chunks([path], ctx, chunk_resources=DEFAULT_CHUNK_RESOURCES):
        build_chunk(chunk, "bench")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--observations", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3, help="ingest and orjson runs, alternated")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    args = parser.parse_args()
    shapes = [shape.strip() for shape in args.shapes.split(",") if shape.strip()]
    unknown = sorted(set(shapes) - set(SHAPES))
    if unknown:
        parser.error(f"unknown shape(s) {', '.join(unknown)}; allowed: {', '.join(SHAPES)}")
    n = args.observations
    from vitalops.ingest import native

    path_name = "native" if native.NATIVE else "pure"
    print(f"fast path: {'C module' if native.NATIVE else 'pure Python (msgspec); the C module is not in use'}")
    medians: dict[str, float] = {}
    normalize_medians: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        database = prepare_database(work)
        for shape in shapes:
            path = work / shape / "Observation.ndjson"
            path.parent.mkdir()
            lines = write_ndjson(path, n, shape)
            megabytes = path.stat().st_size / 1e6
            print(f"shape {shape}: {n:,} Observations, {megabytes:.1f} MB NDJSON")
            to_orjson, to_models, normalized = [], [], []
            for run in range(1, args.repeats + 1):
                orjson_seconds = bare_orjson(lines)
                validate_rate = fhir_resources_rate(lines)
                ingest_seconds, report = end_to_end(database, path, work / f"lake-{shape}-{run}")
                normalize_seconds = normalize_only(path)
                normalized.append(orjson_seconds / normalize_seconds)
                ingest_rate, orjson_rate = n / ingest_seconds, n / orjson_seconds
                to_orjson.append(ingest_rate / orjson_rate)
                to_models.append(ingest_rate / validate_rate)
                print(
                    f"  run {run}: ingest end to end {ingest_rate:,.0f} resources/s, "
                    f"{megabytes / ingest_seconds:.1f} MB/s ({ingest_seconds:.2f} s, facts {report.facts:,}, "
                    f"quarantined {report.quarantined}); bare orjson.loads {orjson_rate:,.0f} resources/s, "
                    f"{megabytes / orjson_seconds:.1f} MB/s; fhir.resources R4B (sample, extrapolated) "
                    f"{validate_rate:,.0f} resources/s; ratios {to_orjson[-1]:.2f}x orjson, "
                    f"{to_models[-1]:.1f}x fhir.resources; read and normalize only (nothing written) "
                    f"{n / normalize_seconds:,.0f} resources/s, {normalized[-1]:.2f}x orjson"
                )
            medians[shape] = statistics.median(to_orjson)
            print(
                f"  {shape}: ratio to bare orjson (median of {args.repeats}): {medians[shape]:.2f}x (target >= 0.5x); "
                f"to fhir.resources {statistics.median(to_models):.1f}x (target >= 20x); "
                f"read and normalize only {statistics.median(normalized):.2f}x orjson"
            )
            normalize_medians[shape] = statistics.median(normalized)
            suffix = "" if shape == "meta" else f".{shape}"
            record(
                f"ingest.{path_name}{suffix}.rate_vs_orjson",
                medians[shape],
                better="higher",
                unit="x baseline",
                note=f"bulk Observation ingest end to end / bare orjson.loads, shape {shape}, {n:,} lines, "
                f"median of {args.repeats}",
            )
            record(
                f"ingest.{path_name}.{shape}.normalize_vs_orjson",
                normalize_medians[shape],
                better="higher",
                unit="x baseline",
                note=f"Observation read and normalize into facts tables, nothing written / bare orjson.loads, "
                f"shape {shape}, {n:,} lines, median of {args.repeats}",
            )
            if shape == "meta":
                record(
                    f"ingest.{path_name}.rate_vs_fhir_resources",
                    statistics.median(to_models),
                    better="higher",
                    unit="x baseline",
                    note="bulk Observation ingest / fhir.resources R4B validation of the same lines",
                )
        database.dispose()  # type: ignore[attr-defined]
    print(
        "ratios to bare orjson: "
        + ", ".join(f"{shape} {ratio:.2f}x" for shape, ratio in medians.items())
        + " (target >= 0.5x each)"
    )
    print(
        "read and normalize only (nothing written), to bare orjson: "
        + ", ".join(f"{shape} {ratio:.2f}x" for shape, ratio in normalize_medians.items())
    )


if __name__ == "__main__":
    main()
