"""The Arrow memory pool: jemalloc by default, the operator's choice when set."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa


def _pool_in_a_fresh_process(**env: str) -> str:
    code = "import vitalops.lake, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"} | env
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    return result.stdout.strip()


def test_the_lake_selects_jemalloc() -> None:
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):  # this process too, unless its operator chose
        assert pa.default_memory_pool().backend_name == "jemalloc"
    assert _pool_in_a_fresh_process() == "jemalloc"


def test_the_operators_choice_of_pool_is_kept() -> None:
    assert _pool_in_a_fresh_process(ARROW_DEFAULT_MEMORY_POOL="system") == "system"
