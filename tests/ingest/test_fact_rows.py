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
    assert _months(effective).to_pylist() == pc.strftime(effective, format="%Y-%m").to_pylist()
    assert _months(effective).to_pylist()[:3] == ["2024-02", "2024-02", "2024-02"]
