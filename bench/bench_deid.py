"""De-identification throughput on the synthetic hospital, beside bare orjson parse + dump of the same lines.

Run: .venv/bin/python bench/bench_deid.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import orjson
from _results import record

from vitalops.deid import deidentify_path
from vitalops.synth import generate_hospital

PATIENTS = 200


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "hospital"
        generate_hospital(source, patients=PATIENTS, sites=["north", "south"], seed=3)
        lines = [line for path in sorted(source.glob("*.ndjson")) for line in path.read_bytes().splitlines()]
        megabytes = sum(len(line) for line in lines) / 1e6

        started = time.perf_counter()
        for line in lines:
            orjson.dumps(orjson.loads(line))
        baseline = time.perf_counter() - started

        started = time.perf_counter()
        report = deidentify_path(source, Path(scratch) / "out", key=b"benchmark-key-0123456789")
        elapsed = time.perf_counter() - started

    skipped = sum(report.skipped.values())
    print(f"lines: {len(lines):,} ({megabytes:.1f} MB); written {report.written:,}, skipped {skipped}")
    print(f"baseline orjson loads+dumps: {len(lines) / baseline:,.0f} lines/s")
    rate = report.read / elapsed
    print(f"deidentify_path (read, scrub, write): {rate:,.0f} resources/s, {megabytes / elapsed:.1f} MB/s")
    print(f"ratio to baseline: {(report.read / elapsed) / (len(lines) / baseline):.2f}")
    record("deid.rate_vs_orjson_roundtrip", (report.read / elapsed) / (len(lines) / baseline), better="higher",
           unit="x baseline", note="deidentify_path resources/s / orjson loads+dumps lines/s, same lines")


if __name__ == "__main__":
    main()
