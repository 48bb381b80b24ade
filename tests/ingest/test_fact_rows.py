from __future__ import annotations

import hashlib
import math
import random
import struct

import pyarrow as pa
import pyarrow.compute as pc

from vitalops.ingest.fact_rows import ROW_FIELDS, _months, fact_ids, rows_to_columns
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


def test_fact_ids_hashed_by_duckdb_equal_the_first_definition() -> None:
    """Large blocks are hashed by DuckDB, which must spell every double as Python's ``str`` does
    (including values from random bit patterns: subnormals, huge exponents, -0.0)."""
    rng = random.Random(5)
    count = 12_000
    values: list[float | None] = []
    for index in range(count):
        pick = index % 5
        if pick == 0:
            values.append(round(rng.uniform(0, 300), 1))
        elif pick == 1:
            values.append((rng.uniform(90, 105) - 32) * 5 / 9)
        elif pick == 2:
            bits = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
            values.append(bits if math.isfinite(bits) else 1e-310)
        elif pick == 3:
            values.append(rng.choice([0.0, -0.0, 1e16, 1e15, 1e-5, 1e-4, 1e22, 2.0**53, 123456789.125]))
        else:
            values.append(None)
    rows = [
        (
            f"site{i % 3}",
            "p" * 64,
            "vital",
            None if i % 7 == 0 else "heart_rate",
            "http://loinc.org",
            "8867-4",
            value,
            "é\\x" if i % 11 == 0 else None,
            "/min",
            "final",
            None,
            "2024-01-01T00:00:00Z",
            None,
            "2024-01-01T00:00:00Z",
            "Observation",
            f"s{i}",
            "1",
            i % 4,
            i,
        )
        for i, value in enumerate(values)
    ]
    ids = fact_ids(rows_to_columns(rows)).to_pylist()
    first_definition = [
        hashlib.sha256(
            "\x1f".join(str(row[i]) for i in range(len(ROW_FIELDS)) if i not in (13, 18)).encode()
        ).hexdigest()
        for row in rows
    ]
    assert ROW_FIELDS[13] == "known_at" and ROW_FIELDS[18] == "resource_index"
    assert ids == first_definition
