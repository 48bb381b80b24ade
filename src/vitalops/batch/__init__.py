"""Batch scoring and backfills on the local engine or Dask: ``score_batch`` scores a cohort or a
table with a model's deployed versions, writes a Delta table with lineage and logs the archive.

Nothing heavy is imported with the package; the names load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["read_lineage", "score_batch"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from vitalops.batch import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'vitalops.batch' has no attribute {name!r}")
