"""DuckDB draws a progress bar on stdout for a slow query, which would land inside a command's
``--json`` output (it did, in the demo's scenario step on a loaded machine). Every connection the
platform opens comes from ``vitalops.core.duck``, with the bar off."""

from __future__ import annotations

import re
from pathlib import Path

import vitalops
from vitalops.core import duck

SOURCE = Path(vitalops.__file__).resolve().parent


def test_the_platforms_connections_draw_no_progress_bar():
    connection = duck.connect()
    try:
        assert connection.execute("SELECT current_setting('enable_progress_bar')").fetchall() == [(False,)]
    finally:
        connection.close()


def test_no_module_opens_duckdb_another_way():
    opened = re.compile(r"\bduckdb\.(connect|sql|query|execute|read_\w+|from_\w+)\(")
    elsewhere = [str(path.relative_to(SOURCE)) for path in SOURCE.rglob("*.py")
                 if path.name != "duck.py" and opened.search(path.read_text(encoding="utf-8"))]
    assert elsewhere == []
