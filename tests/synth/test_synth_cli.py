"""``vitalops synth``: JSON output, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
from typer.testing import CliRunner

from vitalops.cli.main import build_app


def test_synth_json_reports_counts_per_site_and_type(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        build_app(), ["synth", str(tmp_path / "out"), "--patients", "12", "--sites", "a,b", "--seed", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["sites"] == ["a", "b"] and report["patients"] == 12
    assert report["per_site"]["a"]["Patient"] + report["per_site"]["b"]["Patient"] == report["resources"]["Patient"]
    lines = (tmp_path / "out" / "Observation.ndjson").read_bytes().count(b"\n")
    assert lines == report["resources"]["Observation"] > 0


def test_synth_unknown_scenario_exits_2_with_a_plain_message(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "vitalops.cli.main", "synth", str(tmp_path), "--patients", "3", "--scenario", "x"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 2
    message = " ".join(completed.stderr.split())  # rich wraps long lines
    assert "valid scenarios: unit-change, population-shift, protocol-change, unit-mislabel" in message
    assert "Traceback" not in completed.stderr
    assert not list(tmp_path.iterdir())


def test_synth_takes_the_unit_mislabel_scenario_and_reports_its_change_date(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        build_app(),
        ["synth", str(tmp_path / "out"), "--patients", "4", "--sites", "a,b", "--scenario", "unit-mislabel"]
        + ["--start", "2026-01-31", "--end", "2026-04-01", "--json"],
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["scenario"] == "unit-mislabel" and report["change_date"] == "2026-03-02"
