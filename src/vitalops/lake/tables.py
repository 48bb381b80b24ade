"""Where the lake's Delta tables live: a local folder or an fsspec-style URL."""

from __future__ import annotations

from pathlib import Path

from deltalake import DeltaTable


def table_uri(lake_root: str, name: str) -> str:
    """The URI of table ``name`` under ``lake_root`` (local paths are made absolute)."""
    if "://" in lake_root:
        return f"{lake_root.rstrip('/')}/{name}"
    return str((Path(lake_root) / name).resolve())


def table_exists(uri: str) -> bool:
    """True when a Delta table has been committed at ``uri``."""
    if "://" not in uri:
        return (Path(uri) / "_delta_log").is_dir() and DeltaTable.is_deltatable(uri)
    return DeltaTable.is_deltatable(uri)
