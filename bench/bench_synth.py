"""Synthetic hospital throughput: 2,000 patients over three sites (target: under 30 s).

Prints patients/s and resources/s, beside a baseline measured in the same run: writing the same
number of minimal JSON lines with orjson (the floor cost of producing NDJSON at all).

    .venv/bin/python bench/bench_synth.py [--patients N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import orjson
from _results import record

from vitalops.synth import generate_hospital

TARGET_SECONDS_FOR_2000 = 30.0


def baseline_lines_per_second(lines: int, folder: Path) -> float:
    """Write ``lines`` minimal resources as NDJSON with orjson; return lines per second."""
    started = time.perf_counter()
    with (folder / "baseline.ndjson").open("wb", buffering=1 << 20) as out:
        for number in range(lines):
            out.write(orjson.dumps({"resourceType": "Observation", "id": f"obs-{number}", "status": "final"}) + b"\n")
    return lines / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=2000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    try:
        started = time.perf_counter()
        summary = generate_hospital(
            folder / "hospital", patients=args.patients, sites=["north", "south", "east"], seed=7
        )
        elapsed = time.perf_counter() - started
        resources = sum(summary.resources.values())
        size_mb = sum(p.stat().st_size for p in (folder / "hospital").iterdir()) / 1e6
        baseline = baseline_lines_per_second(resources, folder)
        print(
            f"synthetic hospital: {args.patients} patients, {resources:,} resources, {size_mb:,.0f} MB "
            f"in {elapsed:.2f} s"
        )
        print(f"  generator : {args.patients / elapsed:10,.0f} patients/s  {resources / elapsed:12,.0f} resources/s")
        print(f"  baseline  : {'':>10}             {baseline:12,.0f} minimal orjson lines/s (same count, same run)")
        print(f"  ratio     : generator at {100 * resources / elapsed / baseline:.1f}% of the bare-write rate")
        record(f"synth.{args.patients}_patients.rate_vs_orjson_write", resources / elapsed / baseline,
               better="higher", unit="x baseline", note="generator resources/s / minimal orjson lines written/s")
        if args.patients == 2000:
            verdict = "OK" if elapsed < TARGET_SECONDS_FOR_2000 else "SLOWER THAN TARGET"
            print(f"  target    : 2,000 patients in under {TARGET_SECONDS_FOR_2000:.0f} s -> {verdict}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
