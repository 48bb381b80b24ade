"""Ingest writes the online store in the same batch as the lake, and a killed ingest run again
leaves the store equal to one clean run; on SQLite and on Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from tests.features.online_backends import BACKENDS, store_url
from vitalops.auth import SYSTEM
from vitalops.core.settings import Settings, get_settings
from vitalops.db import Database
from vitalops.features.online_store import open_online_store
from vitalops.ingest.service import ingest_paths
from vitalops.lake.facts import FactsStore


def _content(url: str, lake_root: str) -> dict[str, dict[str, bytes]]:
    keys = pc.unique(FactsStore(lake_root).dataset().to_table(columns=["patient_key"])["patient_key"]).to_pylist()
    store = open_online_store(url)
    try:
        return store.rows(sorted(keys))
    finally:
        store.close()


def _clear(url: str) -> None:
    store = open_online_store(url)
    store.clear()
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_killed_ingest_then_rerun_leaves_the_store_equal_to_one_clean_run(
    backend: str, home: Settings, database: Database, synth_export: list[Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, clean_url = store_url(backend, tmp_path), store_url(backend, tmp_path)
    monkeypatch.setenv("VITALOPS_ONLINE_STORE_URL", url)
    get_settings.cache_clear()
    try:
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
        assert open_online_store(url).populated()  # the chunks committed so far are in the store

        ingest_paths(database, SYSTEM, synth_export)
        monkeypatch.setenv("VITALOPS_ONLINE_STORE_URL", clean_url)
        get_settings.cache_clear()
        clean_root = str(tmp_path / "clean-lake")
        ingest_paths(database, SYSTEM, synth_export, lake_root=clean_root)
        rerun = _content(url, home.lake_root)
        assert rerun and rerun == _content(clean_url, clean_root)
        assert sum(map(len, rerun.values())) == FactsStore(home.lake_root).dataset().count_rows()  # none registered
    finally:
        _clear(url)
        _clear(clean_url)
