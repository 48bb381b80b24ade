"""Command-line start-up: ``vitalops --help`` and ``vitalops audit verify`` on a small home, beside
bare ``python -c pass`` measured in the same run (median of repeated runs, wall time).

Targets: ``--help`` under 0.3 s; ``audit verify`` on a small home under 1 s.

    python bench/bench_cli.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import record

VITALOPS = str(Path(sys.executable).with_name("vitalops"))


def median_seconds(command: list[str], repeat: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env, timeout=120)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    bare = median_seconds([sys.executable, "-c", "pass"], args.repeat)
    help_seconds = median_seconds([VITALOPS, "--help"], args.repeat)
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VITALOPS_")}
        env |= {"VITALOPS_HOME": str(Path(folder) / "home"), "VITALOPS_ENVIRONMENT": "development"}
        subprocess.run([VITALOPS, "init"], check=True, capture_output=True, env=env, timeout=120)
        verify_seconds = median_seconds([VITALOPS, "audit", "verify", "--json"], args.repeat, env)
    print(f"python -c pass: {bare * 1000:.0f} ms   vitalops --help: {help_seconds * 1000:.0f} ms "
          f"({help_seconds / bare:.1f}x; target under 300 ms)   vitalops audit verify (small home): "
          f"{verify_seconds * 1000:.0f} ms (target under 1 s)")
    record("cli.help_seconds", help_seconds, better="lower", unit="s",
           note="vitalops --help, wall, median of runs (target under 0.3 s)")
    record("cli.help_vs_python_pass", help_seconds / bare, better="lower", unit="x baseline",
           note="vitalops --help wall time relative to bare `python -c pass` in the same run")
    record("cli.audit_verify_small_home_seconds", verify_seconds, better="lower", unit="s",
           note="vitalops audit verify on a freshly initialized home, wall, median (target under 1 s)")


if __name__ == "__main__":
    main()
