from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from vitalops.ingest.fact_rows import _months
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
    effective = pa.array(["1931-06-02T00:00:00Z", "1999-12-31T23:59:59Z", "2000-01-01T00:00:00Z"],
                         pa.string()).cast(TIMESTAMP)
    assert _months(effective).to_pylist() == ["before-2000", "before-2000", "2000-01"]


def test_a_patients_history_shares_one_partition() -> None:
    effective = pa.array(["1931-06-02T00:00:00Z", "2011-04-01T00:00:00Z", "2024-05-01T10:00:00Z"],
                         pa.string()).cast(TIMESTAMP)
    kinds = pa.array(["demographic", "condition", "vital"])
    assert _months(effective, kinds).to_pylist() == ["history", "history", "2024-05"]
