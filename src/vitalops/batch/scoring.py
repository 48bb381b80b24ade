"""Batch scoring: a cohort or a table scored by the versions deployed at each site, on the local
engine or a Dask cluster, written as a Delta table with lineage and logged to the prediction archive.

The deployments are read once, at the start of a run; each site's champion scores its rows and
the challenger scores where routing sends the patient (a shadow everywhere). The output table
holds the served prediction of every input row; the archive holds every prediction made, the
unserved side (shadow, or the champion beside a canary) included.

A run is identified by what it scored: the model, the deployments, the input rows' content and
the options. Prediction ids follow from that identity and each row's position, so running the
same batch again (after a crash, say) gives the same ids and the archive keeps one copy of each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from sqlalchemy import select

from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize
from vitalops.batch.inputs import BatchInput, check_keys, cohort_rows, cohort_spec, ordered, read_table, restrict
from vitalops.batch.kernel import ScoringPlan, ScoringVersion, feature_matrix, score_partition
from vitalops.core.clock import utcnow
from vitalops.core.extras import import_extra
from vitalops.core.ids import canonical_json, content_hash
from vitalops.db import Database
from vitalops.db.tables.governance import DeploymentEventRow
from vitalops.errors import Conflict, InvalidInput
from vitalops.features.partitions import in_range, key_ranges
from vitalops.features.training_set import code_version, content_sha256
from vitalops.lake.archive import PredictionArchive, days_of, feature_columns
from vitalops.registry.versions import model_row
from vitalops.serving.routing import SiteDeployments, site_deployments
from vitalops.serving.runtime import LoadedVersion, Runtime

ENGINES = ("local", "dask")
#: Input rows per partition (each a task on the Dask engine).
ROWS_PER_PARTITION = 250_000
METADATA_KEY = "vitalops.batch"

#: ``progress(phase, done, total)``; phases are ``features`` (a cohort's rows) and ``scoring``.
Progress = Callable[[str, int, int], None]


def _plan(database: Database, runtime: Runtime, name: str, sites: list[str] | None
          ) -> tuple[ScoringPlan, dict[int, LoadedVersion]]:
    """Every listed site's deployments (all sites the model was ever deployed at when None) and the
    versions they name, loaded and verified."""
    with database.session() as session:
        model = model_row(session, name)
        if sites is None:
            sites = sorted(set(session.scalars(
                select(DeploymentEventRow.site).where(DeploymentEventRow.model_id == model.id))))
        deployments: dict[str, SiteDeployments] = {}
        for site in sites:
            found = site_deployments(session, name, site)
            if found.champion is None:
                raise Conflict(f"model '{name}' has no champion deployed at site '{site}' (pass --site to score "
                               "another site's rows only)", details={"site": site})
            deployments[site] = found
        version_ids = {slot[1] for found in deployments.values()
                       for slot in (found.champion, found.challenger) if slot is not None}
        loaded = {version_id: runtime.version(session, version_id) for version_id in sorted(version_ids)}
    if not deployments:
        raise Conflict(f"model '{name}' is not deployed at any site")
    versions = {
        version_id: ScoringVersion(version_id, version.number, version.artifact_sha256,
                                   None if version.spec is None else version.spec.version, version.threshold,
                                   version.bands.moderate, version.bands.high, version.predictor)
        for version_id, version in loaded.items()
    }
    return ScoringPlan(name, deployments, versions), loaded


def _partitions(rows: pa.Table, count: int) -> list[pa.Table]:
    """``rows`` split by ranges of patient key (rows without a key join the first range)."""
    parts = []
    keys = rows.column("patient_key")
    for position, (lower, upper) in enumerate(key_ranges(count)):
        mask = in_range(keys, lower, upper)
        if position == 0:
            mask = pc.or_(mask, pc.is_null(keys))
        part = rows.filter(mask)
        if part.num_rows:
            parts.append(part)
    return parts


def _run(plan: ScoringPlan, parts: list[pa.Table], engine: str, scheduler: str | None,
         report: Callable[[int, int], None]) -> list[pa.Table]:
    report(0, len(parts))
    if engine == "local":
        results = []
        for part in parts:
            results.append(score_partition(plan, part))
            report(len(results), len(parts))
        return results
    distributed = import_extra("distributed")
    done: dict[int, pa.Table] = {}
    with distributed.Client(scheduler, set_as_default=False) as client:
        shared = client.scatter(plan, broadcast=True)
        futures = {client.submit(score_partition, shared, part, pure=False): position
                   for position, part in enumerate(parts)}
        for future in distributed.as_completed(list(futures), loop=client.loop):
            done[futures[future]] = future.result()
            report(len(done), len(parts))
    return [done[position] for position in range(len(parts))]


def _prediction_ids(run_id: str, scored: pa.Table) -> pa.Array:
    numbers = (scored.column("row").to_numpy() * 2 + scored.column("rank").to_numpy()).tolist()
    return pa.array([f"{run_id}{number:012x}" for number in numbers], pa.string())


def _lineage(plan: ScoringPlan, loaded: dict[int, LoadedVersion]) -> list[dict[str, Any]]:
    entries = []
    for site, found in sorted(plan.sites.items()):
        slots: list[tuple[str, int, int, str, int | None]] = []
        if found.champion is not None:
            slots.append(("champion", found.champion[1], found.champion[2], "champion", None))
        if found.challenger is not None:
            _, version_id, event_id, mode, percent = found.challenger
            slots.append(("challenger", version_id, event_id, mode, percent))
        for slot, version_id, event_id, mode, percent in slots:
            version = loaded[version_id]
            entries.append({
                "site": site, "slot": slot, "version": version.number, "artifact_sha256": version.artifact_sha256,
                "definitions_version": None if version.spec is None else version.spec.version,
                "deployment_event_id": event_id, "mode": mode, "percent": percent,
            })
    return entries


def _archive_rows(plan: ScoringPlan, batch: BatchInput, scored: pa.Table, ids: pa.Array, *, run_id: str,
                  actor: str) -> pa.Table:
    """Every prediction of the run in the archive's form, with the exact vector each version scored."""
    rows = batch.rows
    pieces = []
    version_ids = scored.column("version_id").to_numpy()
    for version_id, version in plan.versions.items():
        selected = np.nonzero(version_ids == version_id)[0]
        if len(selected) == 0:
            continue
        part = scored.take(selected)
        source = rows.take(part.column("row"))
        names, features, features_json = feature_columns(feature_matrix(source, version.feature_names),
                                                         version.feature_names)
        count = part.num_rows
        at = source.column("index_time")
        pieces.append(pa.table({
            "prediction_id": ids.take(pa.array(selected)), "at": at, "model": pa.array([plan.model] * count),
            "version": part.column("version"), "artifact_sha256": pa.array([version.artifact_sha256] * count),
            "definitions_version": pa.array([version.definitions_version] * count, pa.string()),
            "site": source.column("site"), "day": days_of(at), "patient_key": source.column("patient_key"),
            "deployment_event_id": part.column("deployment_event_id"), "mode": part.column("mode"),
            "served": part.column("served"), "score": part.column("score"), "threshold": part.column("threshold"),
            "band": part.column("band"), "decision": part.column("decision"), "feature_names": names,
            "features": features, "features_json": features_json,
            "explanation_method": pa.nulls(count, pa.string()), "explanation_json": pa.nulls(count, pa.string()),
            "latency_ms": pa.nulls(count, pa.float64()), "request_id": pa.array([run_id] * count),
            "input_kind": pa.array([batch.kind] * count), "actor": pa.array([actor] * count),
        }))
    return pa.concat_tables(pieces)


def _output(plan: ScoringPlan, batch: BatchInput, scored: pa.Table, ids: pa.Array) -> pa.Table:
    """The served prediction of every input row, beside its keys."""
    served_mask = scored.column("served")
    served = scored.filter(served_mask)
    source = batch.rows.take(served.column("row"))
    artifacts = {vid: v.artifact_sha256 for vid, v in plan.versions.items()}
    keys = ["patient_key", "site", *(["encounter_key"] if "encounter_key" in source.column_names else []),
            "index_time"]
    columns: dict[str, Any] = {"prediction_id": ids.filter(served_mask)}
    columns.update({name: source.column(name) for name in keys})
    columns.update({
        "model": pa.array([plan.model] * served.num_rows), "version": served.column("version"),
        "artifact_sha256": pa.array([artifacts[v] for v in served.column("version_id").to_pylist()], pa.string()),
        "deployment_event_id": served.column("deployment_event_id"), "mode": served.column("mode"),
        "score": served.column("score"), "threshold": served.column("threshold"), "band": served.column("band"),
        "decision": served.column("decision"),
    })
    return pa.table(columns)


def _counts(scored: pa.Table) -> dict[str, int]:
    counts: dict[str, int] = {}
    for mode, served in zip(scored.column("mode").to_pylist(), scored.column("served").to_pylist(), strict=True):
        key = f"{mode}{'' if served else '_unserved'}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def score_batch(
    database: Database,
    actor: Principal,
    name: str,
    out_uri: str,
    *,
    lake_root: str,
    runtime: Runtime,
    cohort: Path | None = None,
    input_uri: str | None = None,
    at: datetime | None = None,
    latest: bool = False,
    site: str | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    partitions: int | None = None,
    archive_root: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score a cohort (``cohort``, a definition file) or a table (``input_uri``) with ``name``'s
    deployed versions; write the served predictions to ``out_uri`` (a Delta table, replaced) with
    lineage in its commit, every prediction to the archive, and one audit event ``batch.scored``.

    Needs ``data:ingest`` (a bulk write of patient-level results into the lake). Raises
    The archive is the one under ``archive_root`` (default ``lake_root``). Raises
    InvalidInput for bad options or input, NotFound for a missing input, Conflict when a site of
    the input has no champion or a cohort's versions were trained on different or unregistered
    definitions.
    """
    if engine not in ENGINES:
        raise InvalidInput(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}", details={"field": "engine"})
    if engine == "dask" and not scheduler:
        raise InvalidInput("the dask engine needs --scheduler with the cluster's address", details={"field": "engine"})
    if (cohort is None) == (input_uri is None):
        raise InvalidInput("give exactly one of --cohort or --input", details={"field": "cohort"})
    authorize(database, actor, Permission.DATA_INGEST, object_type="model", object_id=name)
    report: Progress = progress or (lambda phase, done, total: None)
    started = utcnow()
    if cohort is not None:
        plan, loaded = _plan(database, runtime, name, None if site is None else [site])
        specs = {v.spec.version if v.spec is not None else None for v in loaded.values()}
        if len(specs) != 1 or None in specs:
            raise Conflict(f"the versions of '{name}' deployed here were trained on {len(specs)} definition sets "
                           "(or unregistered ones); score a table of their features with --input instead")
        trained_on = next(v.spec for v in loaded.values() if v.spec is not None)
        spec = cohort_spec(cohort, trained_on)
        table, source_lineage = cohort_rows(spec, lake_root, engine=engine, scheduler=scheduler,
                                            progress=lambda done, total: report("features", done, total))
        source_lineage.update({"kind": "cohort", "cohort_file": str(cohort), "cohort": spec.cohort.model_dump(
            mode="json")})
        every = spec.cohort.every if spec.cohort.schedule == "every" else None
        rows = restrict(check_keys(table), at=at, latest=latest, every=every, site=site)
        unplanned = sorted(set(pc.unique(rows.column("site")).to_pylist()) - set(plan.sites))
        if unplanned:
            raise Conflict(f"model '{name}' has no champion at site '{unplanned[0]}' (pass --site to score one "
                           "site's rows)", details={"site": unplanned[0]})
    else:
        assert input_uri is not None
        table, source_lineage = read_table(input_uri)
        source_lineage["kind"] = "table"
        rows = restrict(check_keys(table), at=at, latest=latest, every=None, site=site)
        plan, loaded = _plan(database, runtime, name, sorted(pc.unique(rows.column("site")).to_pylist()))
    if rows.num_rows == 0:
        raise InvalidInput("no rows to score (the cohort or table is empty after --at and --site)",
                           details={"field": "at"})
    batch = BatchInput(ordered(rows), source_lineage["kind"], source_lineage)
    deployments = _lineage(plan, loaded)
    options = {"at": at, "latest": latest, "site": site}
    identity = content_hash({"model": name, "deployments": deployments, "options": options,
                             "input_sha256": content_sha256(batch.rows)})
    run_id = f"bat_{identity[:20]}"
    count = partitions or max(1, math.ceil(batch.rows.num_rows / ROWS_PER_PARTITION))
    results = _run(plan, _partitions(batch.rows, count), engine, scheduler,
                   lambda done, total: report("scoring", done, total))
    scored = pa.concat_tables(results)
    scored = scored.take(pc.sort_indices(scored, sort_keys=[("row", "ascending"), ("rank", "ascending")]))
    ids = _prediction_ids(run_id, scored)
    output = _output(plan, batch, scored, ids)
    lineage = {
        "run_id": run_id, "model": name, "deployments": deployments, "input": source_lineage, "options": options,
        "engine": engine, "rows": batch.rows.num_rows, "predictions": scored.num_rows, "code_version": code_version(),
        "started_at": started,
    }
    commit = CommitProperties(custom_metadata={METADATA_KEY: canonical_json(lineage).decode()})
    write_deltalake(out_uri, output, mode="overwrite", schema_mode="overwrite", commit_properties=commit)
    delta_version = int(DeltaTable(out_uri).version())
    archive_rows = _archive_rows(plan, batch, scored, ids, run_id=run_id, actor=actor.name)
    archived = PredictionArchive(archive_root or lake_root).append(archive_rows)
    counts = _counts(scored)
    summary = {"run_id": run_id, "model": name, "out": out_uri, "delta_version": delta_version,
               "rows": batch.rows.num_rows, "predictions": scored.num_rows, "archived": archived, "by_mode": counts,
               "sites": sorted(plan.sites), "engine": engine, "input": source_lineage["kind"]}
    with database.session() as session:
        append(session, actor=actor, action="batch.scored", object_type="model", object_id=name, payload=summary)
    return {**summary, "deployments": deployments}


def read_lineage(out_uri: str) -> dict[str, Any]:
    """The lineage a batch run wrote in the commit of its output table's current version."""
    import orjson

    delta = DeltaTable(out_uri)
    commit = next((entry for entry in delta.history() if entry.get("version") == delta.version()), None)
    if commit is None or METADATA_KEY not in commit:
        raise InvalidInput("the Delta table at the given location is not a batch scoring output")
    return dict(orjson.loads(commit[METADATA_KEY]))
