from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from vitalops.audit import list_events
from vitalops.auth import SYSTEM
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.db.tables.ingest import IngestBatchRow
from vitalops.ingest.service import ingest_paths
from vitalops.lake.facts import FactsStore


def _content(lake_root: str) -> list[tuple]:
    table = FactsStore(lake_root).dataset().to_table()
    columns = [c for c in table.column_names if c not in ("batch_id", "known_at")]
    return sorted(zip(*(table[c].to_pylist() for c in columns), strict=True))


def test_killed_ingest_then_rerun_equals_one_clean_run(
    home: Settings, database: Database, synth_export: list[Path], tmp_path: Path
) -> None:
    env = {**os.environ, "VITALOPS_INGEST_CHUNK_ROWS": "2000"}
    command = [sys.executable, "-m", "vitalops.cli.main", "ingest", *map(str, synth_export), "--json"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second_commit = Path(home.lake_root) / "facts" / "_delta_log" / "00000000000000000001.json"
    deadline = time.monotonic() + 60
    while not second_commit.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    partial = FactsStore(home.lake_root).dataset().count_rows()
    assert partial > 0

    rerun = ingest_paths(database, SYSTEM, synth_export)
    with database.session() as session:
        statuses = sorted(row.status for row in session.query(IngestBatchRow))
        killed = session.query(IngestBatchRow).filter(IngestBatchRow.status == "interrupted").one()
        events = [e.action for e in list_events(session, object_id=killed.id)]
    assert statuses == ["completed", "interrupted"]  # the killed batch is no longer "running"
    assert killed.finished_at is not None and "running_on" not in orjson.loads(killed.counts_json)
    assert orjson.loads(killed.counts_json).get("facts", 0) <= partial  # what it had committed, at most
    assert sorted(events) == ["ingest.batch.interrupted", "ingest.batch.started"]  # list_events: newest first
    clean_root = str(tmp_path / "clean-lake")
    clean = ingest_paths(database, SYSTEM, synth_export, lake_root=clean_root)
    assert rerun.facts == clean.facts - partial
    assert _content(home.lake_root) == _content(clean_root)
