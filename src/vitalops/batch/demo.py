"""The demo's batch run: the census of the deterioration cohort at the end of the data, scored by the
versions deployed at each site (champion, canary, shadow) from its training-set table, written as
a Delta table with lineage and logged to the prediction archive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from deltalake import DeltaTable

from vitalops.auth import Principal
from vitalops.batch.scoring import score_batch
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.serving.runtime import Runtime


def run_batch_demo(database: Database, actor: Principal, settings: Settings, runtime: Runtime, *, model: str,
                   dataset_uri: str) -> dict[str, Any]:
    """Score each patient's latest row at the dataset's last index time (``--at T --latest``)."""
    times = DeltaTable(dataset_uri).to_pyarrow_table(columns=["index_time"]).column("index_time")
    at = pc.max(times).as_py()
    out = str((Path(settings.home) / "scores" / model).resolve())
    summary = score_batch(database, actor, model, out, lake_root=settings.lake_root, runtime=runtime,
                          input_uri=dataset_uri, at=at, latest=True)
    return {**summary, "at": at.isoformat()}
