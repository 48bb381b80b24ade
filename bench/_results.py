"""Benchmark figures that remember: every bench records its figures here, beside the accepted ones.

A figure is preferably a ratio to a baseline measured in the same run (those travel across
machines better than times). ``record`` writes it to ``bench/results.json`` and prints it beside
the last *accepted* value, the one in the committed file (``git show HEAD:bench/results.json``;
outside a git checkout, the file as this process first read it), and flags it when it fell by
more than 20%: for a higher-is-better figure, below 0.8x the accepted value; for a lower-is-better
one, above 1.25x (the same 20% drop in its reciprocal). A figure is accepted by committing the file.

    from _results import record
    record("features.pit_1m_vs_duckdb", 0.099, better="higher", unit="x baseline",
           note="training set of 1M facts, facts/s relative to a DuckDB scan and group of the same facts")

Run on its own (``python bench/_results.py [--strict]``) it prints every figure against its
accepted value and says how many fell by more than 20% (``make bench`` runs it last); with
``--strict`` it exits 1 when any did.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

RESULTS = Path(__file__).resolve().with_name("results.json")
TOLERANCE = 0.20
ABOUT = (
    "Figures written by `make bench` (bench/_results.py). `value` is the latest run; a figure is accepted by "
    "committing this file. Ratios are to a baseline measured in the same run."
)

_first_read: dict[str, Any] | None = None


def machine() -> str:
    """A short description of where a figure was measured."""
    return f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def _read_working() -> dict[str, Any]:
    global _first_read
    document = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"figures": {}}
    if _first_read is None:
        _first_read = document
    return document


def accepted_figures() -> dict[str, Any]:
    """The figures as committed (the accepted values); the file as first read when git cannot say."""
    try:
        shown = subprocess.run(["git", "show", f"HEAD:./{RESULTS.name}"], cwd=RESULTS.parent, capture_output=True,
                               text=True, timeout=30, check=False)
    except OSError:
        shown = None
    if shown is not None and shown.returncode == 0:
        return dict(json.loads(shown.stdout).get("figures", {}))
    _read_working()
    assert _first_read is not None
    return dict(_first_read.get("figures", {}))


def change(value: float, accepted: float, better: str) -> float:
    """How good ``value`` is relative to ``accepted``: above 1 better, below 1 worse."""
    if better == "higher":
        return value / accepted if accepted else float("inf")
    return accepted / value if value else float("inf")


def fell(value: float, accepted: float, better: str) -> bool:
    return change(value, accepted, better) < 1 - TOLERANCE


def describe(name: str, value: float, unit: str, better: str, accepted: dict[str, Any] | None) -> str:
    line = f"  [figure] {name}: {value:.4g} {unit} ({better} is better)"
    if accepted is None or "value" not in accepted:
        return line + "; no accepted value yet"
    previous = float(accepted["value"])
    relative = change(value, previous, better)
    verdict = f"FELL BY MORE THAN {TOLERANCE:.0%}" if fell(value, previous, better) else "ok"
    return line + f"; accepted {previous:.4g} ({relative:.2f}x as good) {verdict}"


def record(name: str, value: float, *, better: Literal["higher", "lower"], unit: str, note: str,
           bench: str | None = None) -> bool:
    """Write ``name = value`` to the results file, print it beside its accepted value; True if it fell >20%."""
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', not {better!r}")
    accepted = accepted_figures().get(name)
    print(describe(name, value, unit, better, accepted))
    document = _read_working()
    document["about"] = ABOUT
    figures = document.setdefault("figures", {})
    figures[name] = {
        "value": round(float(value), 6),
        "better": better,
        "unit": unit,
        "note": note,
        "bench": bench or Path(sys.argv[0]).name,
        "measured": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
    }
    document["figures"] = dict(sorted(figures.items()))
    with tempfile.NamedTemporaryFile("w", dir=RESULTS.parent, delete=False, suffix=".tmp") as out:
        json.dump(document, out, indent=2)
        out.write("\n")
    os.chmod(out.name, 0o644)  # a temporary file is private; the results file is for everyone
    Path(out.name).replace(RESULTS)
    return accepted is not None and "value" in accepted and fell(value, float(accepted["value"]), better)


def summary(strict: bool = False) -> int:
    """Print every figure against its accepted value; 1 when ``strict`` and any fell by more than 20%."""
    current = _read_working().get("figures", {})
    accepted = accepted_figures()
    worse = 0
    print(f"bench figures ({RESULTS.name}) against the accepted (committed) values:")
    for name, figure in current.items():
        print(describe(name, float(figure["value"]), figure["unit"], figure["better"], accepted.get(name)))
        previous = accepted.get(name)
        worse += bool(previous and fell(float(figure["value"]), float(previous["value"]), figure["better"]))
    print(f"{worse} of {len(current)} figures fell by more than {TOLERANCE:.0%}" if worse else
          f"no figure fell by more than {TOLERANCE:.0%} ({len(current)} figures)")
    return 1 if worse and strict else 0


if __name__ == "__main__":
    sys.exit(summary(strict="--strict" in sys.argv))
