"""Moving the prediction log's older rows from the metadata database into the lake's archive.

Each chunk of rows is written to the archive first (keyed by prediction id), then deleted from the
database in one transaction with its audit event. A crash between the two leaves the rows in both
places; the next run writes them again, which adds nothing (the archive skips ids it holds), and
deletes them. So a crash midway and a rerun give the same archive as one clean run.

A prediction with a recorded outcome stays in the database: outcomes reference their prediction
there, and monitoring joins the two. Once archived, a prediction can no longer take an outcome
through ``record_outcome``, which is why the default age (7 days) is well past the outcome
horizons of the models here (48 hours for deterioration).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
from sqlalchemy import delete, exists, select

from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import as_utc, utcnow
from vitalops.db import Database
from vitalops.db.tables.registry import ModelRow, ModelVersionRow
from vitalops.db.tables.serving import OutcomeRow, PredictionRow
from vitalops.errors import InvalidInput
from vitalops.lake.archive import PREDICTION_ARCHIVE_SCHEMA, PredictionArchive, days_of
from vitalops.registry.schemas import Signature

DEFAULT_OLDER_THAN = timedelta(days=7)
#: Rows per archive commit and database transaction.
CHUNK_ROWS = 10_000


def parse_age(text: str) -> timedelta:
    """``7d``, ``12h`` or ``30m`` as a duration; InvalidInput otherwise."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise InvalidInput(f"--older-than takes a number of days, hours or minutes (7d, 12h, 30m), not {text!r}",
                           details={"field": "older_than"})
    return timedelta(**{units[unit]: int(number)})


def _archive_table(rows: list[PredictionRow], models: dict[int, str], versions: dict[int, tuple[int, list[str]]]
                   ) -> pa.Table:
    values = [orjson.loads(row.features_json) for row in rows]
    at = pa.array([as_utc(row.at) for row in rows], pa.timestamp("us", tz="UTC"))
    columns: dict[str, Any] = {
        "prediction_id": [row.id for row in rows], "at": at, "model": [models[row.model_id] for row in rows],
        "version": [versions[row.version_id][0] for row in rows],
        "artifact_sha256": [row.artifact_sha256 for row in rows],
        "definitions_version": [row.definitions_version for row in rows], "site": [row.site for row in rows],
        "day": days_of(at), "patient_key": [row.patient_key for row in rows],
        "deployment_event_id": [row.deployment_event_id for row in rows], "mode": [row.mode for row in rows],
        "served": [row.served for row in rows], "score": [row.score for row in rows],
        "threshold": [row.threshold for row in rows], "band": [row.band for row in rows],
        "decision": [row.decision for row in rows], "feature_names": [versions[row.version_id][1] for row in rows],
        "features": [[None if v is None else float(v) for v in vector] for vector in values],
        "features_json": [row.features_json for row in rows],
        "explanation_method": [row.explanation_method for row in rows],
        "explanation_json": [row.explanation_json for row in rows], "latency_ms": [row.latency_ms for row in rows],
        "request_id": [row.request_id for row in rows], "input_kind": [row.input_kind for row in rows],
        "actor": [row.actor for row in rows],
    }
    return pa.table({name: pa.array(columns[name], PREDICTION_ARCHIVE_SCHEMA.field(name).type)
                     if not isinstance(columns[name], pa.Array) else columns[name]
                     for name in PREDICTION_ARCHIVE_SCHEMA.names})


def _chunk(database: Database, cutoff: datetime, limit: int) -> pa.Table | None:
    """The next ``limit`` logged predictions made before ``cutoff`` without an outcome, oldest id first."""
    with database.session() as session:
        has_outcome = exists().where(OutcomeRow.prediction_id == PredictionRow.id)
        rows = list(session.scalars(
            select(PredictionRow).where(PredictionRow.at < cutoff, ~has_outcome).order_by(PredictionRow.id)
            .limit(limit)))
        if not rows:
            return None
        models = {row.id: row.name for row in session.scalars(
            select(ModelRow).where(ModelRow.id.in_({r.model_id for r in rows})))}
        versions = {row.id: (row.number, Signature.model_validate_json(row.signature_json).feature_names)
                    for row in session.scalars(
                        select(ModelVersionRow).where(ModelVersionRow.id.in_({r.version_id for r in rows})))}
        return _archive_table(rows, models, versions)


def _delete(database: Database, actor: Principal, ids: list[str], *, cutoff: datetime, added: int) -> None:
    """Delete the archived rows and audit it, in one transaction."""
    with database.session() as session:
        session.execute(delete(PredictionRow).where(PredictionRow.id.in_(ids)))
        append(session, actor=actor, action="predictions.archived", object_type="prediction_log",
               object_id="predictions",
               payload={"moved": len(ids), "newly_archived": added, "made_before": cutoff.isoformat()})


def archive_predictions(
    database: Database,
    actor: Principal,
    lake_root: str,
    *,
    older_than: timedelta = DEFAULT_OLDER_THAN,
    now: datetime | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, Any]:
    """Move logged predictions (served and shadow) made more than ``older_than`` ago from the
    database into the archive; rows with an outcome stay. Idempotent across crashes (see the module).
    Needs ``data:ingest``. Returns counts: moved, newly archived (less than moved after a crash).
    """
    authorize(database, actor, Permission.DATA_INGEST, object_type="prediction_log", object_id="predictions")
    cutoff = as_utc(now or utcnow()) - older_than
    archive = PredictionArchive(lake_root)
    moved = added = chunks = 0
    while (table := _chunk(database, cutoff, chunk_rows)) is not None:
        written = archive.append(table)
        ids = table.column("prediction_id").to_pylist()
        _delete(database, actor, ids, cutoff=cutoff, added=written)
        moved, added, chunks = moved + len(ids), added + written, chunks + 1
    return {"moved": moved, "newly_archived": added, "chunks": chunks, "made_before": cutoff.isoformat(),
            "archive": archive.uri}
