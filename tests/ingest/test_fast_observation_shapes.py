"""The Observation fast path takes the common shapes of bulk export lines (with ``meta`` and
versions, without ``meta`` at all, panels of components with ``issued``) and gives exactly the
facts, versions, quarantine and counts of the per-resource path for each, edge cases included."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.ingest.test_fast_observations import _assert_same, _columnar, _ctx, _per_resource
from vitalops.ingest.chunks import normalized_chunks
from vitalops.terminology import Terminology, load_terminology

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SITE_SYSTEM = "https://vitalops.dev/fhir/site"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ABSENT = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "not-performed"}]}
INTERPRETATION = [
    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}
]
VITALS = [
    ("8867-4", "/min", 50, 130),
    ("8310-5", "Cel", 36, 39),
    ("29463-7", "kg", 45, 120),
    ("2160-0", "mg/dL", 0.5, 3),
]


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return load_terminology()


def _quantity(rng: random.Random, unit: str, low: float, high: float) -> dict[str, Any]:
    return {"value": round(rng.uniform(low, high), 1), "unit": unit, "system": UCUM, "code": unit}


def _component(rng: random.Random, code: str, unit: str, low: float, high: float) -> dict[str, Any]:
    return {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": _quantity(rng, unit, low, high)}


def _base(index: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o-{index}",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs" if index % 2 else "laboratory"}]}],
        "subject": {"reference": f"Patient/p{index % 17}"},
        "encounter": {"reference": f"Encounter/e{index % 31}"},
        "effectiveDateTime": f"2024-03-{1 + index % 28:02d}T{index % 24:02d}:15:00+01:00",
        "issued": f"2024-03-{1 + index % 28:02d}T{index % 24:02d}:45:00.250+01:00",
    }


def with_meta(rng: random.Random, index: int) -> dict[str, Any]:
    code, unit, low, high = VITALS[index % len(VITALS)]
    return {
        **_base(index),
        "meta": {
            "versionId": str(1 + index % 3),
            "lastUpdated": f"2024-03-{1 + index % 28:02d}T23:00:00Z",
            "tag": [{"system": SITE_SYSTEM, "code": ("north", "south")[index % 2]}],
        },
        "code": {"coding": [{"system": LOINC, "code": code, "display": "a display"}], "text": "text"},
        "valueQuantity": _quantity(rng, unit, low, high),
    }


def no_meta(rng: random.Random, index: int) -> dict[str, Any]:
    """As Synthea writes them: no ``meta``, and (every other line here) ``urn:uuid`` references."""
    code, unit, low, high = VITALS[index % len(VITALS)]
    urns = {}
    if index % 2:
        urns = {
            "subject": {"reference": f"urn:uuid:{index % 17:08x}-0000-4000-8000-000000000000"},
            "encounter": {"reference": f"urn:uuid:{index % 31:08x}-1111-4000-8000-000000000000"},
        }
    return {
        **_base(index),
        **urns,
        "code": {"coding": [{"system": LOINC, "code": code, "display": "Heart rate ü \u2028"}], "text": "x"},
        "valueQuantity": _quantity(rng, unit, low, high),
    }


def panel(rng: random.Random, index: int) -> dict[str, Any]:
    components = [_component(rng, "8480-6", "mm[Hg]", 90, 170), _component(rng, "8462-4", "mm[Hg]", 50, 100)]
    if index % 3 == 0:
        components[1] = {"code": components[1]["code"], "dataAbsentReason": ABSENT}
    return {
        **_base(index),
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "interpretation": INTERPRETATION,
        "component": components,
    }


def _edge_cases(rng: random.Random) -> list[dict[str, Any]]:
    """Variants of each shape, each one either taken or left to the per-resource path."""
    edits: list[Callable[[dict[str, Any]], object]] = [
        lambda o: o.update(meta={}),
        lambda o: o.update(meta={"lastUpdated": "2024-04-01T10:00:00Z"}),
        lambda o: o.update(meta={"lastUpdated": "2024-04-01T10:00:00"}),
        lambda o: o.update(meta={"lastUpdated": ""}),
        lambda o: o.update(meta={"versionId": "7"}),
        lambda o: o.update(meta={"versionId": "", "lastUpdated": "2024-04-01T10:00:00+02:00"}),
        lambda o: o.update(meta={"versionId": None}),
        lambda o: o.update(meta={"versionId": ""}),
        lambda o: o.update(meta={"tag": [{"system": SITE_SYSTEM, "code": "south-campus"}]}),
        lambda o: o.update(meta={"tag": [{"system": SITE_SYSTEM, "code": "ZZCANARY-SITE"}]}),
        lambda o: o.update(meta={"source": "#abc", "profile": ["http://x/p"]}),
        lambda o: o.update(meta=None),
        lambda o: o.pop("issued"),
        lambda o: o.update(subject={"reference": "urn:uuid:6f3c2b8e-0000-4000-8000-00000000000a"}),
        lambda o: o.update(subject={"reference": "urn:uuid:"}),
        lambda o: o.update(subject={"reference": "urn:uuid:a/b"}),
        lambda o: o.update(subject={"reference": "urn:uuid:Patient/p1"}),
        lambda o: o.update(encounter={"reference": "urn:uuid:7f3c2b8e-0000-4000-8000-00000000000b"}),
        lambda o: o.update(encounter={"reference": "urn:uuid:"}),
        lambda o: o.update(issued="2024-03-01T10:00:00"),
        lambda o: o.update(issued="2024-03-01"),
        lambda o: o.pop("effectiveDateTime"),
        lambda o: o.update(interpretation=INTERPRETATION),
        lambda o: o.update(referenceRange=[{"low": {"value": 1, "unit": "kg"}, "high": {"value": 9, "unit": "kg"}}]),
        lambda o: o.update(note=[{"text": "value was high"}]),
        lambda o: o.update(dataAbsentReason=ABSENT),
        lambda o: o.update(valueString="seven"),
        lambda o: o.update(code={"coding": [{"system": LOINC, "code": "8480-6", "display": 'd\\"é\n'}]}),
        lambda o: o.update(id="o-\u00e9-\\/-\U0001f600"),
        lambda o: o.update(extension=[{"url": "http://x", "valueDecimal": 1e-7}, {"url": "y", "valueInteger": 10}]),
        lambda o: o.update(extra={"n": [1.0, 1e21, -0.0, 123456789012345678, 0.1, 2.5e-8, True, None]}),
    ]
    quantity_edits: list[Callable[[dict[str, Any]], object]] = [
        lambda q: q.pop("code"),
        lambda q: (q.pop("code"), q.pop("system")),
        lambda q: (q.pop("code"), q.pop("unit")),
        lambda q: q.update(code=None),
        lambda q: q.update(value=int(q["value"])),
        lambda q: q.update(value="1"),
        lambda q: q.pop("value"),
        lambda q: q.update(code="furlong", unit="furlong"),
        lambda q: q.update(comparator="<"),
    ]
    component_edits: list[Callable[[list[dict[str, Any]]], object]] = [
        lambda cs: cs.append({"code": {"coding": [{"system": LOINC, "code": "8478-0"}]}}),
        lambda cs: cs.append({"code": {"coding": [{"system": LOINC, "code": "8478-0"}]}, "dataAbsentReason": ABSENT}),
        lambda cs: cs.append({"dataAbsentReason": ABSENT}),
        lambda cs: cs.insert(
            0, {"code": {"coding": [{"system": LOINC, "code": "8478-0"}]}, "dataAbsentReason": ABSENT}
        ),
        lambda cs: cs.append({"code": {"coding": [{"system": "http://local", "code": "x"}]}, "valueString": "v"}),
        lambda cs: cs.append({"code": {"coding": [{"system": LOINC, "code": "8478-0"}]}, "valueString": "v"}),
        lambda cs: cs.append(
            {"code": {"coding": [{"code": "x"}]}, "valueCodeableConcept": {"coding": [{"code": "y"}]}}
        ),
        lambda cs: cs.append({"code": {"coding": [{"system": LOINC, "code": 5}]}}),
        lambda cs: cs.append({"code": {"coding": {"system": LOINC}}}),
        lambda cs: cs.append({"code": None, "valueQuantity": None}),
        lambda cs: cs.append(
            {"code": {"coding": [{"system": LOINC, "code": "8478-0"}]}, "interpretation": INTERPRETATION}
        ),
        lambda cs: [c.update(dataAbsentReason=ABSENT) or c.pop("valueQuantity", None) for c in cs],
        lambda cs: cs[-1].get("valueQuantity", {}).pop("code", None),
        lambda cs: cs.clear(),
    ]
    out: list[dict[str, Any]] = []
    for make in (with_meta, no_meta, panel):
        for index in range(2):
            observation = make(rng, index)
            for edit in edits:
                changed = copy.deepcopy(observation)
                edit(changed)
                out.append(changed)
            if "valueQuantity" in observation:
                for quantity_edit in quantity_edits:
                    changed = copy.deepcopy(observation)
                    quantity_edit(changed["valueQuantity"])
                    out.append(changed)
            for component_edit in component_edits:
                changed = copy.deepcopy(observation)
                changed.setdefault("component", [_component(rng, "8480-6", "mm[Hg]", 90, 170)])
                component_edit(changed["component"])
                out.append(changed)
            out += [observation, copy.deepcopy(observation)]  # the same content twice: one duplicate
    return out


def _write(path: Path, resources: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(resource) + b"\n" for resource in resources))
    return path


@pytest.mark.parametrize("make", [with_meta, no_meta, panel], ids=["meta", "no-meta", "components"])
def test_each_common_shape_is_taken_with_identical_facts(
    make: Callable[[random.Random, int], dict[str, Any]],
    implementation: str,
    terminology: Terminology,
    tmp_path: Path,
) -> None:
    rng = random.Random(5)
    file = _write(tmp_path / "Observation.ndjson", [make(rng, i) for i in range(600)])
    exact, _ = _per_resource(file, terminology)
    for block in (97, 600):
        columnar, reader = _columnar(file, terminology, block=block)
        _assert_same(columnar, exact)
        assert reader.taken == 600  # every line went the fast way
    assert exact.facts.num_rows >= 600 and not exact.quarantined
    versions = set(exact.facts["source_version"].to_pylist())
    if make is with_meta:
        assert versions == {"1", "2", "3"}
    else:  # a hash of the content, known at the ingest time
        assert all(version.startswith("sha256:") for version in versions) and len(versions) == 600
        assert {t.isoformat() for t in exact.facts["known_at"].to_pylist()} == {"2025-03-01T12:00:00+00:00"}


def test_edge_cases_of_each_shape_give_identical_outcomes(
    implementation: str, terminology: Terminology, tmp_path: Path
) -> None:
    rng = random.Random(11)
    resources = _edge_cases(rng)
    file = _write(tmp_path / "Observation.ndjson", resources)
    exact, _ = _per_resource(file, terminology)
    assert exact.quarantined and exact.skipped and exact.duplicates  # every outcome happens
    for block in (13, len(resources)):
        columnar, reader = _columnar(file, terminology, block=block)
        _assert_same(columnar, exact)
        assert len(resources) // 2 < reader.taken < exact.read


def test_no_meta_lines_through_ingest_chunks(terminology: Terminology, tmp_path: Path) -> None:
    rng = random.Random(3)
    resources = [no_meta(rng, i) for i in range(300)] + [panel(rng, i) for i in range(300)]
    rng.shuffle(resources)
    file = _write(tmp_path / "Observation.ndjson", resources)
    exact, _ = _per_resource(file, terminology)
    results = list(normalized_chunks([file], _ctx(terminology), chunk_resources=101, batch_id="b1"))
    assert len(results) > 1
    facts = sorted((row for result in results for row in result.facts.to_pylist()), key=lambda row: row["fact_id"])
    assert facts == exact.facts.sort_by("fact_id").to_pylist()
    assert sum(result.read for result in results) == exact.read == 600


def _numbers(rng: random.Random) -> list[bytes]:
    """Objects holding numbers of every spelling: integers, decimals, exponents, zeros."""
    out = []
    for _ in range(1_500):
        digits = str(rng.randint(0, 10 ** rng.randint(0, 19)))
        fraction = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 7)))
        sign = rng.choice(["", "-"])
        out.append(f'{{"v":{sign}{digits}{"." + fraction if fraction else ""}}}'.encode())
        out.append(f'{{"v":{sign}0.{"0" * rng.randint(0, 6)}{fraction or "1"},"e":1.5e{rng.randint(-9, 30)}}}'.encode())
    return out


def test_native_content_versions_equal_the_per_resource_hash() -> None:
    """The C module's content hash of a line equals ``source_version`` over orjson's parse of it,
    wherever it gives one (it must give one for every line of the common shapes, and may leave
    escapes and exponents to orjson), and it gives
    none for a line orjson does not read."""
    import hashlib

    from tests.ingest.test_fast_observations import _mutants
    from vitalops.ingest import native
    from vitalops.ingest.extract_common import source_version

    assert native.use_native(True)
    rng = random.Random(8)
    common = [orjson.dumps(make(rng, i)) for make in (with_meta, no_meta, panel) for i in range(200)]
    typical = common + [orjson.dumps(resource) for resource in _edge_cases(rng)]
    odd = [
        b' { "b" : [ 1 , 2.50 , -0.0 , 0.0001 , 1E2 , 0.00001 ] , "a" : { } , "c" : [ ] , "d" : null } ',
        b'{"b":1,"a":{"z":null,"y":true,"x":false,"\xc3\xa9":1},"A":"\xe2\x80\xa8\x7f"}',
        b'{"k":"\\u0041","j":"\\n"}',
        b'{"a":1,"a":2}',
        b'{"n":12345678901234567890,"m":-123456789012345678,"z":-0}',
        b'{"x":123456789012345.0,"y":1234567890123456.0,"z":0.30000000000000004}',
        b"[1,2]",
        b'"text"',
    ]
    lines = typical + odd + _numbers(rng)
    lines += [mutant for line in typical[:150:3] for mutant in _mutants(line, rng, 30)]
    hashed = native.content_versions(lines)
    assert hashed is not None and len(hashed) == len(lines)
    assert all(version is not None for version in hashed[: len(common)])
    compared = 0
    for line, version in zip(lines, hashed, strict=True):
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError:
            assert version is None
            continue
        if version is None:
            continue
        compared += 1
        if type(resource) is dict and not resource.get("meta"):
            assert "sha256:" + version == source_version(resource)
        else:
            assert version == hashlib.sha256(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    assert compared > len(typical) + 1_000
