"""The Observation fast path (msgspec and Arrow columns, with or without its C module) gives
exactly the facts, quarantine and counts of the per-resource path."""

from __future__ import annotations

import copy
import hashlib
import operator
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from vitalops.fhir.readers import iter_resources
from vitalops.ingest.chunks import normalized_chunks
from vitalops.ingest.columnar_observations import ColumnarObservations
from vitalops.ingest.extract_common import Context
from vitalops.ingest.fact_rows import ROW_FIELDS
from vitalops.ingest.normalize import ChunkNormalization, NormalizeResult
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.synth import generate_hospital
from vitalops.terminology import Terminology, load_terminology

BAD_INPUTS = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"
INGEST_TIME = datetime(2025, 3, 1, 12, tzinfo=UTC)
# The fact id as first defined: sha256 of "%s"-formatted id fields joined by \x1f.
_ID_FIELDS = operator.itemgetter(
    *(
        i
        for i, n in enumerate(ROW_FIELDS)
        if n not in ("known_at", "issued_at", "source_unit", "effective_basis", "resource_index")
    )
)
_ID_TEMPLATE = "\x1f".join(["%s"] * 17)


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return load_terminology()


@pytest.fixture(scope="module")
def hospital_observations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    files = {}
    for scenario in (None, "unit-change"):
        out = tmp_path_factory.mktemp(f"synth-{scenario}")
        generate_hospital(out, patients=150, sites=["north", "south", "east"], seed=3, scenario=scenario)
        files[str(scenario)] = out / "Observation.ndjson"
    return files


#: The registered sites: the hospital's feeds tag north by its code, south by a campus name.
SITES = {"north": "north", "south-campus": "south", "south": "south", "east": "east"}


def _ctx(terminology: Terminology) -> Context:
    return Context("s1", Pseudonymizer(b"fast-path-key"), terminology, "2025-03-01T12:00:00.000000Z", SITES)


def _per_resource(file: Path, terminology: Terminology) -> tuple[NormalizeResult, list[tuple[Any, ...]]]:
    chunk = ChunkNormalization(_ctx(terminology))
    for record in iter_resources(file):
        chunk.add_record(record)
    rows = list(chunk.rows)
    return chunk.result("b1"), rows


def _columnar(file: Path, terminology: Terminology, block: int = 1_000) -> tuple[NormalizeResult, ColumnarObservations]:
    ctx = _ctx(terminology)
    chunk = ChunkNormalization(ctx)
    lines = file.read_bytes().splitlines(keepends=True)
    columnar = ColumnarObservations(ctx)
    for start in range(0, len(lines), block):
        columnar.add_lines(chunk, str(file), start + 1, lines[start : start + block])
    return chunk.result("b1"), columnar


def _assert_same(fast: NormalizeResult, exact: NormalizeResult) -> None:
    assert fast.facts.schema == exact.facts.schema
    assert fast.facts.sort_by("fact_id").to_pylist() == exact.facts.sort_by("fact_id").to_pylist()
    assert sorted(fast.quarantined, key=repr) == sorted(exact.quarantined, key=repr)
    assert (fast.read, fast.ingested, fast.duplicates) == (exact.read, exact.ingested, exact.duplicates)
    assert fast.skipped == exact.skipped
    assert fast.ingested_per_site == exact.ingested_per_site


@pytest.mark.parametrize("scenario", ["None", "unit-change"])
def test_synthetic_hospital_observations_give_identical_facts(
    scenario: str, implementation: str, hospital_observations: dict[str, Path], terminology: Terminology
) -> None:
    file = hospital_observations[scenario]
    exact, rows = _per_resource(file, terminology)
    columnar, reader = _columnar(file, terminology)
    _assert_same(columnar, exact)
    assert reader.taken > 0.95 * exact.read  # the fast path really ran
    assert exact.facts.num_rows > 30_000 and {"Cel", "kg"} <= set(exact.facts["unit"].to_pylist())
    # Fact ids keep their first definition.
    first_definition = {hashlib.sha256((_ID_TEMPLATE % _ID_FIELDS(row)).encode()).hexdigest() for row in rows}
    assert first_definition == set(exact.facts["fact_id"].to_pylist())


def _odd_variants(observation: dict[str, Any]) -> list[dict[str, Any] | str | list[Any]]:
    """Shapes the fast path must hand to the per-resource path (or handle exactly)."""
    edits: list[Callable[[dict[str, Any]], object]] = [
        lambda o: o.pop("meta"),
        lambda o: o.update(effectiveDateTime="2024-06-30"),
        lambda o: o.update(effectiveDateTime="2024-06-30T10:46:07"),
        lambda o: o.update(effectiveDateTime="2024-13-45T10:46:07Z"),
        lambda o: o.update(subject={"reference": "urn:uuid:6f3c2b8e-0000-4000-8000-000000000001"}),
        lambda o: o.update(subject={"reference": "https://ehr.example/fhir/Patient/p9/_history/2"}),
        lambda o: o.update(subject={"reference": "Group/g1"}),
        lambda o: o.update(subject={"display": "no reference"}),
        lambda o: o.update(context=o.pop("encounter")),
        lambda o: o.update(encounter={"reference": "#contained"}),
        lambda o: o.update(encounter={"reference": "Encounter/"}),
        lambda o: o["valueQuantity"].update(value="12"),
        lambda o: o["valueQuantity"].update(value=True),
        lambda o: o["valueQuantity"].update(value=72),
        lambda o: o["valueQuantity"].update(code="kg", unit="kg"),
        lambda o: o["valueQuantity"].update(code="blah", unit="blah"),
        lambda o: (o["valueQuantity"].pop("code"), o["valueQuantity"].pop("unit")),
        lambda o: o["valueQuantity"].update(code=None, unit="mg/dl "),
        lambda o: o.update(status="cancelled"),
        lambda o: o.pop("status"),
        lambda o: o.update(valueString=str(o.pop("valueQuantity"))),
        lambda o: o.update(valueInteger=7) or o.pop("valueQuantity"),
        lambda o: o.update(issued="2024-06-30T10:59:54"),
        lambda o: o.update(issued="2020-01-01T00:00:00Z"),
        lambda o: o.pop("issued"),
        lambda o: (o.pop("issued"), o["meta"].pop("lastUpdated")),
        lambda o: o["meta"].update(versionId=3),
        lambda o: o["meta"].update(versionId=""),
        lambda o: o["meta"].update(tag=[{"system": "other", "code": "x"}, {"system": o["meta"]["tag"][0]["system"]}]),
        lambda o: o["meta"].update(tag=[]),
        lambda o: o["meta"].update(tag=[{"system": o["meta"]["tag"][0]["system"], "code": "ZZCANARY-NAME-7731"}]),
        lambda o: o["meta"].update(tag=[{"system": o["meta"]["tag"][0]["system"], "code": "south-campus"}]),
        lambda o: o["meta"].update(tag=[{"system": o["meta"]["tag"][0]["system"], "code": "North"}]),
        lambda o: o.update(status="final "),
        lambda o: o.update(status="MRN-CANARY-99812"),
        lambda o: o.update(status="amended"),
        lambda o: o.update(code={"coding": []}),
        lambda o: o.pop("code"),
        lambda o: o.update(code={"coding": [{"system": "http://local", "code": "HR"}]}),
        lambda o: o.pop("category"),
        lambda o: o.update(category={"coding": []}),
        lambda o: o.update(category=[{"coding": [{"code": "laboratory"}]}]),
        lambda o: o.update(
            text={"status": "generated", "div": "<div>x</div>"}, extension=[{"url": "u", "valueString": "s"}]
        ),
        lambda o: o.update(id=""),
        lambda o: o.update(resourceType="Patient"),
        lambda o: o.update(
            component=[
                {"code": o["code"], "valueQuantity": o["valueQuantity"]},
                {"code": o["code"], "dataAbsentReason": {}},
            ]
        ),
        lambda o: (
            o.update(valueString="panel note", component=[{"code": o["code"], "valueQuantity": o["valueQuantity"]}])
            or o.pop("valueQuantity")
        ),
        lambda o: (
            o.update(component=[{"code": o["code"], "valueQuantity": o["valueQuantity"]}]) or o.pop("valueQuantity")
        ),
        lambda o: o.update(component=[]) or o.pop("valueQuantity"),
    ]
    variants: list[dict[str, Any] | str | list[Any]] = []
    for edit in edits:
        changed = copy.deepcopy(observation)
        edit(changed)
        variants.append(changed)
    variants += [
        observation,
        observation,  # the same fact twice: the second is a duplicate
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": observation}]},
        "not json {",
        "",
        [1, 2],
    ]
    return variants


def test_odd_and_bad_lines_give_identical_outcomes(
    implementation: str, hospital_observations: dict[str, Path], terminology: Terminology, tmp_path: Path
) -> None:
    source = hospital_observations["None"].read_bytes().splitlines()
    plain = [orjson.loads(line) for line in source[:200]]
    with_quantity = [o for o in plain if "valueQuantity" in o][:3]
    lines: list[bytes] = []
    for observation in with_quantity:
        for variant in _odd_variants(observation):
            lines.append(variant.encode() if isinstance(variant, str) else orjson.dumps(variant))
    lines += source[:200] + (BAD_INPUTS / "observations.ndjson").read_bytes().splitlines()
    lines += (BAD_INPUTS / "not_json.ndjson").read_bytes().splitlines()
    odd = tmp_path / "Observation.ndjson"
    odd.write_bytes(b"\n".join(lines) + b"\n")
    exact, _ = _per_resource(odd, terminology)
    assert exact.quarantined and exact.skipped and exact.duplicates  # the file exercises every outcome
    for block in (100, len(lines)):
        columnar, reader = _columnar(odd, terminology, block=block)
        _assert_same(columnar, exact)
        assert 200 < reader.taken < exact.read


def _lenient_json_variants(line: bytes) -> list[bytes]:
    """Lines that lenient JSON readers take but strict JSON does not, or values of another JSON
    type than the element has: the fast path must leave each to the per-resource path."""
    text = line.decode()
    assert text.endswith("}")
    return [
        (text[:-1] + ',"note":NaN}').encode(),
        (text[:-1] + ',"note":Infinity}').encode(),
        (text[:-1] + ',"note":[1,2,]}').encode(),
        (text[:-1] + ",}").encode(),
        text.replace('"status":"final"', '"status":5').encode(),
        text.replace('"status":"final"', '"status":true').encode(),
        text.replace('"status":"final"', '"status":{"a":1}').encode(),
        text.replace('"status":"final"', '"status":null').encode(),
        text.replace('"versionId":"', '"versionId":7,"x":"').encode(),
    ]


def test_fast_path_leaves_lenient_json_and_odd_types_to_the_per_resource_path(
    implementation: str, hospital_observations: dict[str, Path], terminology: Terminology, tmp_path: Path
) -> None:
    source = hospital_observations["None"].read_bytes().splitlines()
    plain = [orjson.loads(line) for line in source[:300]]
    with_quantity = [o for o in plain if "valueQuantity" in o][:2]
    lines: list[bytes] = []
    for observation in with_quantity:
        for variant in _odd_variants(observation):
            if isinstance(variant, dict):
                lines.append(orjson.dumps(variant))
        line = orjson.dumps(observation)
        lines += _lenient_json_variants(line)
        for edit in (
            lambda o: o.update(id="id\\x41-é-\u00e9"),  # a backslash and text beyond ASCII in the pseudonymized id
            lambda o: o.update(encounter=None),
            lambda o: o.update(meta=None),
            lambda o: o["meta"].update(tag=None),
            lambda o: o.update(category=None),
            lambda o: o.update(category=[{"coding": None}, {"coding": [{"code": "vital-signs"}]}]),
            lambda o: o.update(code={"coding": None}),
            lambda o: o.update(code=None),
            lambda o: o.update(component=None),
            lambda o: o["valueQuantity"].update(value=1e300),
            lambda o: o["valueQuantity"].update(value=-0.0),
            lambda o: o["valueQuantity"].update(value=12345678901234567890),
            lambda o: o["valueQuantity"].update(value=None),
            lambda o: o.update(valueQuantity=None),
            lambda o: o["meta"].update(tag=[{"system": o["meta"]["tag"][0]["system"], "code": 7}]),
            lambda o: o.update(code={"coding": [{"system": "http://loinc.org", "code": 8867}]}),
            lambda o: o.update(category=[{"coding": [{"code": ["vital-signs"]}]}]),
            lambda o: o["valueQuantity"].update(code="", unit="kg"),
            lambda o: o.update(subject={"reference": "Patient/a/b"}),
        ):
            changed = copy.deepcopy(observation)
            edit(changed)
            lines.append(orjson.dumps(changed))
    for lenient in (b"NaN", b"Infinity", b",]", b",}"):
        assert sum(lenient in line for line in lines) == len(with_quantity)
    lines += source[:300]
    odd = tmp_path / "Observation.ndjson"
    odd.write_bytes(b"\n".join(lines) + b"\n")
    exact, _ = _per_resource(odd, terminology)
    columnar, reader = _columnar(odd, terminology, block=len(lines))
    _assert_same(columnar, exact)
    assert 300 < reader.taken < exact.read
    assert exact.quarantined and exact.skipped


def test_ingest_chunks_of_any_size_match_the_per_resource_path(
    hospital_observations: dict[str, Path], terminology: Terminology
) -> None:
    file = hospital_observations["unit-change"]
    exact, _ = _per_resource(file, terminology)
    results = list(normalized_chunks([file], _ctx(terminology), chunk_resources=7_001, batch_id="b1"))
    assert len(results) > 1
    ids = [fact_id for result in results for fact_id in result.facts["fact_id"].to_pylist()]
    assert sorted(ids) == sorted(exact.facts["fact_id"].to_pylist())
    assert sum(result.read for result in results) == exact.read


_MUTATIONS = [
    b"\\",
    b'"',
    b",",
    b"}",
    b"]",
    b"{",
    b"[",
    b":",
    b" ",
    b"\t",
    b"\x00",
    b"\x1f",
    b"\x7f",
    b"\x80",
    b"\xc3",
    b"\xc3\xa9",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xff",
    b"\\u00e9",
    b"\\ud800",
    b"\\udc00",
    b"\\ud83d\\ude00",
    b"\\n",
    b"\\x",
    b"0",
    b"-",
    b"1e999",
    b"1e-999",
    b".5",
    b"01",
    b"-0",
    b"NaN",
    b"null",
    b"true",
    b'"status":"final",',
    b'"id":"dup",',
    b'"valueQuantity":null,',
    b"e",
    b"E+",
    b"12345678901234567890",
]


def _mutants(line: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Lines one or two random edits away from ``line``: a byte dropped, doubled or replaced, or a
    token from ``_MUTATIONS`` put in, at a random place."""
    out = []
    for _ in range(count):
        if rng.random() < 0.3:  # two edits
            line2 = _mutants(line, rng, 1)[0] or line
            out.append(_mutants(line2, rng, 1)[0])
            continue
        at = rng.randrange(len(line))
        action = rng.randrange(4)
        if action == 0:
            out.append(line[:at] + line[at + 1 :])
        elif action == 1:
            out.append(line[:at] + line[at : at + 1] * 2 + line[at + 1 :])
        elif action == 2:
            out.append(line[:at] + rng.choice(_MUTATIONS) + line[at + 1 :])
        else:
            out.append(line[:at] + rng.choice(_MUTATIONS) + line[at:])
    return out


def test_randomly_broken_lines_give_identical_outcomes(
    implementation: str, hospital_observations: dict[str, Path], terminology: Terminology, tmp_path: Path
) -> None:
    """Thousands of lines an edit or two away from real ones (broken JSON, bad UTF-8, escapes,
    odd numbers, repeated keys, wrong types): whatever each becomes, the fast path must end where
    the per-resource path does."""
    rng = random.Random(20261123)
    source = hospital_observations["unit-change"].read_bytes().splitlines()
    panels = [line for line in source if b'"component"' in line][:20]
    singles = [line for line in source if b'"component"' not in line][:40]
    lines: list[bytes] = []
    for line in panels + singles:
        lines += _mutants(line, rng, 60)
    lines += source[:300]
    odd = tmp_path / "Observation.ndjson"
    odd.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    exact, _ = _per_resource(odd, terminology)
    columnar, reader = _columnar(odd, terminology, block=500)
    _assert_same(columnar, exact)
    assert exact.quarantined and reader.taken > 300  # both outcomes happen
