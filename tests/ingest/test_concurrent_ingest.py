from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from vitalops.auth import SYSTEM
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.ingest.service import ingest_paths
from vitalops.lake.facts import FactsStore


def _content(lake_root: str) -> list[tuple]:
    table = FactsStore(lake_root).dataset().to_table()
    columns = [c for c in table.column_names if c not in ("batch_id", "known_at")]
    return sorted(zip(*(table[c].to_pylist() for c in columns), strict=True))


def test_two_ingests_of_the_same_files_into_one_lake_add_each_fact_once(
    home: Settings, database: Database, synth_export: list[Path], tmp_path: Path
) -> None:
    env = {**os.environ, "VITALOPS_INGEST_CHUNK_ROWS": "700"}
    command = [sys.executable, "-m", "vitalops.cli.main", "ingest", *map(str, synth_export), "--json"]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err.decode()[-2000:] for _, err in outputs]
    reports = [orjson.loads(out) for out, _ in outputs]

    clean_root = str(tmp_path / "clean-lake")
    clean = ingest_paths(database, SYSTEM, synth_export, lake_root=clean_root)
    assert sum(report["facts"] for report in reports) == clean.facts
    assert all(report["read"] == clean.read for report in reports)
    assert _content(home.lake_root) == _content(clean_root)
    assert (Path(home.lake_root) / ".facts.lock").exists()
