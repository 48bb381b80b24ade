from __future__ import annotations

import hashlib
import math
import random
import struct

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from vitalops.ingest.fact_rows import ROW_FIELDS, _months, build_fact_table, fact_ids, rows_to_columns
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.lake.schema import TIMESTAMP


def test_months_match_strftime_of_every_timestamp() -> None:
    texts = [
        "2024-01-31T23:59:59-05:00",
        "2024-02-01T00:00:00Z",
        "2024-02-29T12:00:00+14:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "1969-12-31T23:59:59Z",
        None,
    ]
    effective = pa.array(texts, pa.string()).cast(TIMESTAMP)
    expected = [
        None if text is None else ("before-2000" if text < "2000" else month)
        for text, month in zip(texts, pc.strftime(effective, format="%Y-%m").to_pylist(), strict=True)
    ]
    assert _months(effective).to_pylist() == expected
    assert _months(effective).to_pylist()[:3] == ["2024-02", "2024-02", "2024-02"]


def test_everything_effective_before_2000_shares_one_partition() -> None:
    effective = pa.array(["1931-06-02T00:00:00Z", "1999-12-31T23:59:59Z", "2000-01-01T00:00:00Z"], pa.string()).cast(
        TIMESTAMP
    )
    assert _months(effective).to_pylist() == ["before-2000", "before-2000", "2000-01"]


def test_a_patients_history_shares_one_partition() -> None:
    effective = pa.array(["1931-06-02T00:00:00Z", "2011-04-01T00:00:00Z", "2024-05-01T10:00:00Z"], pa.string()).cast(
        TIMESTAMP
    )
    kinds = pa.array(["demographic", "condition", "vital"])
    assert _months(effective, kinds).to_pylist() == ["history", "history", "2024-05"]


def _random_doubles(rng: random.Random, count: int) -> list[float | None]:
    values: list[float | None] = []
    for index in range(count):
        pick = index % 6
        if pick == 0:
            values.append(round(rng.uniform(0, 300), 1))
        elif pick == 1:
            values.append((rng.uniform(90, 105) - 32) * 5 / 9)
        elif pick == 2:
            values.append(struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0])  # any bits: nan, inf, subnormal
        elif pick == 3:
            values.append(
                rng.choice([0.0, -0.0, 1e16, 1e15, 9999999999999998.0, 1e-5, 1e-4, 1e22, 2.0**53, 123456789.125])
            )
        elif pick == 4:
            values.append(rng.choice([math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308]))
        else:
            values.append(None)
    return values


def test_fact_ids_equal_the_first_definition(implementation: str) -> None:
    """sha256 over every id field as Python's ``str`` spells it; the C module must spell every
    double as Python does (random bit patterns: subnormals, huge exponents, nan, inf, -0.0)."""
    rng = random.Random(5)
    values = _random_doubles(rng, 12_000)
    rows = [
        (
            f"site{i % 3}",
            "p" * 64,
            "vital",
            None if i % 7 == 0 else "heart_rate",
            "http://loinc.org",
            "8867-4",
            value,
            "é\\x\x1f" if i % 11 == 0 else None,
            "/min",
            "final" if i % 13 else "",
            None,
            "2024-01-01T00:00:00Z",
            None,
            "2024-01-01T00:00:00Z",
            "Observation",
            f"s{i}",
            "1",
            i % 4 - 1,
            i,
            "2024-01-01T00:00:00Z" if i % 2 else None,
            ("umol/L", None, "mg/dL")[i % 3],
            "recorded" if i % 5 == 0 else None,
        )
        for i, value in enumerate(values)
    ]
    columns = rows_to_columns(rows)
    ids = fact_ids(columns).to_pylist()
    first_definition = [
        hashlib.sha256(
            "\x1f".join(str(row[i]) for i in range(len(ROW_FIELDS)) if i not in (13, 18, 19, 20, 21)).encode()
        ).hexdigest()
        for row in rows
    ]
    # issued_at, source_unit and effective_basis, added later, are left out like known_at: the ids
    # of facts already in lakes hold.
    assert ROW_FIELDS[13] == "known_at" and ROW_FIELDS[18] == "resource_index" and ROW_FIELDS[19] == "issued_at"
    assert ROW_FIELDS[20:] == ("source_unit", "effective_basis")
    assert ids == first_definition
    # A slice of a column block (arrays that start inside their buffers) gives the same ids.
    sliced = {name: column.slice(1_001, 3_000) for name, column in columns.items()}
    assert fact_ids(sliced).to_pylist() == first_definition[1_001:4_001]


def test_pseudonyms_of_a_column_equal_one_at_a_time(implementation: str) -> None:
    pseudonyms = Pseudonymizer(b"column-key")
    ids = ["obs-1", "", "é/ü\\x", "a" * 300, *(f"r{i}" for i in range(5_000))]
    column = pa.array(ids, pa.string())
    expected = [pseudonyms.resource_key("Observation", i) for i in ids]
    assert pseudonyms.resource_key_column("Observation", column).to_pylist() == expected
    assert pseudonyms.resource_key_column("Observation", column.slice(3, 10)).to_pylist() == expected[3:13]
    references = pa.array([f"Patient/{i}" for i in ids], pa.string())
    assert pseudonyms.reference_key_column(references).to_pylist() == [pseudonyms.patient_key(i) for i in ids]
    with pytest.raises(ValueError, match="null"):
        pseudonyms.resource_key_column("Observation", pa.array(["a", None]))


def test_a_date_arrow_cannot_read_leaves_only_its_resource_out() -> None:
    """Python's ``fromisoformat`` reads "04:54:000"; Arrow does not. What Arrow cannot read decides,
    so the chunk never fails on it: that resource is set aside (to be quarantined) and the rest lands."""
    rows = [
        (
            "s",
            "p",
            "vital",
            "heart_rate",
            "http://loinc.org",
            "8867-4",
            70.0 + i,
            None,
            "/min",
            "final",
            None,
            effective,
            None,
            "2024-01-01T00:00:00Z",
            "Observation",
            f"o{i}",
            "1",
            0,
            i,
            None,
            "/min",
            None,
        )
        for i, effective in enumerate(
            ["2024-10-27T04:54:00-07:00", "2024-10-27T04:54:000-07:00", "2024-10-27T05:00:00Z", "not a date"] * 50
        )
    ]
    built = build_fact_table(rows_to_columns(rows), "b1")
    assert built.bad_time_resources == {i for i in range(200) if i % 4 in (1, 3)}
    assert built.table.num_rows == 100
