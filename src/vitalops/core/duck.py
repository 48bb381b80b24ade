"""DuckDB connections as the platform opens them.

DuckDB draws a progress bar on stdout for a query that runs longer than a couple of seconds; on a
loaded machine that lands in the middle of a command's ``--json`` output. Every connection is
opened here, with the bar off.
"""

from __future__ import annotations

import duckdb


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that prints nothing."""
    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false")
    return connection
