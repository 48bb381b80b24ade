"""Point-in-time training sets: cohort -> patient partitions -> kernel -> one Delta table with a
fingerprint.

The cohort and the facts' latest known time (``as_of``, which censors labels) are computed once;
each patient partition then runs ``build_partition`` locally or on a Dask cluster. The result is
the same table either way, sorted by patient_key, index_time, encounter_key.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake

from vitalops.core import duck
from vitalops.core.ids import canonical_json, sha256_hex
from vitalops.errors import IntegrityError, InvalidInput, NotFound
from vitalops.features.cohorts import COHORT_KINDS, build_index
from vitalops.features.definitions import DatasetSpec, spec_from_dict
from vitalops.features.engine import apply_imputation
from vitalops.features.facts_view import ENGINE_COLUMNS, register_facts
from vitalops.features.partitions import (
    PartitionResult,
    PartitionTask,
    build_partition,
    in_range,
    key_ranges,
    open_facts,
)
from vitalops.lake.schema import DATASET_ATTRIBUTE_COLUMNS, DATASET_KEY_COLUMNS, DATASET_LABEL_COLUMNS

#: Facts per partition the builder aims for.
FACTS_PER_PARTITION = 250_000
FINGERPRINT_FILE = "fingerprint.json"
METADATA_KEY = "vitalops.training_set"
ENGINES = ("local", "dask")
SORT_KEYS = [("patient_key", "ascending"), ("index_time", "ascending"), ("encounter_key", "ascending")]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DatasetFingerprint:
    """What a training set was built from, and a hash of what it holds."""

    facts_version: int
    definitions_version: str
    code_version: str
    rows: int
    content_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingSet:
    """A built training set. ``missing`` counts each feature's nulls before imputation."""

    table: pa.Table
    fingerprint: DatasetFingerprint
    feature_names: list[str]
    spec: DatasetSpec
    missing: dict[str, int] = field(default_factory=dict)


def code_version() -> str:
    """The installed VitalOps version, recorded in every fingerprint."""
    return importlib.metadata.version("vitalops")


def content_sha256(table: pa.Table) -> str:
    """sha256 of the table's Arrow IPC stream (schema and values, chunking normalised)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return sha256_hex(sink.getvalue().to_pybytes())


def _cohort_index(dataset: Any, spec: DatasetSpec, as_of_us: int) -> pa.Table:
    facts = dataset.to_table(columns=list(ENGINE_COLUMNS), filter=pc.field("kind").isin(list(COHORT_KINDS)))
    con = duck.connect()
    try:
        register_facts(con, facts)
        return build_index(con, spec.cohort, as_of_us)
    finally:
        con.close()


def _run_dask(tasks: list[PartitionTask], scheduler: str, report: Progress) -> list[PartitionResult]:
    from distributed import Client, as_completed  # the cluster client only when asked for

    results: dict[int, PartitionResult] = {}
    with Client(scheduler, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        futures = {
            client.submit(build_partition, task, pure=False): position for position, task in enumerate(tasks)
        }
        for future in as_completed(list(futures), loop=client.loop):  # type: ignore[no-untyped-call]
            results[futures[future]] = future.result()
            report(len(results), len(tasks))
    return [results[position] for position in range(len(tasks))]


def build_training_set(
    spec: DatasetSpec,
    lake_root: str,
    *,
    engine: str = "local",
    scheduler: str | None = None,
    progress: Progress | None = None,
    facts_version: int | None = None,
    partitions: int | None = None,
) -> TrainingSet:
    """Build ``spec``'s training set from the facts at ``facts_version`` (latest when None).

    Raises InvalidInput for an unknown engine, a Dask run without a scheduler address, an empty
    facts table, or a cohort that selects nobody (naming the spec file and the ``cohort`` field).
    """
    if engine not in ENGINES:
        raise InvalidInput(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "dask" and not scheduler:
        raise InvalidInput("the dask engine needs --scheduler with the cluster's address")
    report = progress or (lambda done, total: None)
    try:
        dataset, version = open_facts(lake_root, facts_version)
    except Exception as exc:  # deltalake raises its own types for a missing table or version
        raise NotFound(f"no facts table at version {facts_version} under the lake root") from exc
    total_facts = dataset.count_rows()
    if total_facts == 0:
        raise InvalidInput("the facts table is empty")
    # The latest time anything in the facts is known: no fact's known time (lake.versions) exceeds
    # the largest of its stored times.
    times = dataset.to_table(columns=["known_at", "issued_at"])
    as_of_us = max(int(pc.cast(pc.max(times.column(name)), pa.int64()).as_py() or 0) for name in times.column_names)
    index = _cohort_index(dataset, spec, as_of_us)
    if len(index) == 0:
        raise InvalidInput(
            f"{spec.source}: cohort: selects nobody in facts version {version}",
            details={"file": spec.source, "field": "cohort"},
        )
    count = partitions or max(1, math.ceil(total_facts / FACTS_PER_PARTITION))
    tasks = []
    for lower, upper in key_ranges(count):
        part = index.filter(in_range(index.column("patient_key"), lower, upper))
        if len(part):
            tasks.append(PartitionTask(lake_root, version, lower, upper, part, spec, as_of_us))
    report(0, len(tasks))
    if engine == "dask":
        results = _run_dask(tasks, scheduler or "", report)
    else:
        results = []
        for task in tasks:
            results.append(build_partition(task))
            report(len(results), len(tasks))
    rows = pa.concat_tables([result.rows for result in results])
    rows = rows.take(pc.sort_indices(rows, sort_keys=SORT_KEYS)).combine_chunks()
    missing = {name: rows.column(name).null_count for name in spec.feature_names}
    columns = [*DATASET_KEY_COLUMNS, *DATASET_LABEL_COLUMNS, *DATASET_ATTRIBUTE_COLUMNS, *spec.feature_names]
    table = apply_imputation(rows.select(columns), spec)
    fingerprint = DatasetFingerprint(
        facts_version=version,
        definitions_version=spec.version,
        code_version=code_version(),
        rows=table.num_rows,
        content_sha256=content_sha256(table),
    )
    return TrainingSet(table, fingerprint, spec.feature_names, spec, missing)


def _spec_document(spec: DatasetSpec) -> dict[str, Any]:
    return {"definitions": spec.model_dump(mode="json"), "terminology_version": spec._terminology_version,
            "source": spec.source}


def write_training_set(training_set: TrainingSet, out_uri: str) -> int:
    """Write the table as a Delta table at ``out_uri`` (replacing an earlier build) with the
    fingerprint and the definitions in the commit metadata, and ``fingerprint.json`` in the
    table's folder when it is local. Returns the Delta version written."""
    spec = _spec_document(training_set.spec)
    metadata = {"fingerprint": training_set.fingerprint.to_dict(), "spec": spec}
    write_deltalake(
        out_uri,
        training_set.table,
        mode="overwrite",
        schema_mode="overwrite",
        commit_properties=CommitProperties(custom_metadata={METADATA_KEY: canonical_json(metadata).decode()}),
    )
    if "://" not in out_uri or out_uri.startswith("file://"):
        folder = Path(out_uri.removeprefix("file://"))
        document = training_set.fingerprint.to_dict()
        options = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        (folder / FINGERPRINT_FILE).write_bytes(orjson.dumps(document, option=options))
    return int(DeltaTable(out_uri).version())


def read_training_set(uri: str, *, version: int | None = None) -> TrainingSet:
    """Read a training set written by ``write_training_set``; raises NotFound when there is none
    and IntegrityError when its content no longer matches its fingerprint."""
    try:
        delta = DeltaTable(uri, version=version)
    except Exception as exc:  # deltalake's TableNotFoundError and friends
        raise NotFound("no training set at the given location") from exc
    history = delta.history()
    commit = next((entry for entry in history if entry.get("version") == delta.version()), None)
    if commit is None or METADATA_KEY not in commit:
        raise NotFound("the Delta table at the given location is not a VitalOps training set")
    metadata = orjson.loads(commit[METADATA_KEY])
    fingerprint = DatasetFingerprint(**metadata["fingerprint"])
    document = metadata["spec"]
    spec = spec_from_dict(document["definitions"], source=document["source"])
    spec._terminology_version = document["terminology_version"]
    table = delta.to_pyarrow_table()
    table = table.take(pc.sort_indices(table, sort_keys=SORT_KEYS)).combine_chunks()
    if content_sha256(table) != fingerprint.content_sha256:
        raise IntegrityError("the training set's content does not match its fingerprint")
    missing = {name: table.column(name).null_count for name in spec.feature_names}
    return TrainingSet(table, fingerprint, spec.feature_names, spec, missing)


def summarize(training_set: TrainingSet) -> dict[str, Any]:
    """Rows, labelled rows, positives, prevalence per site and missingness per feature (before
    imputation): counts and fractions only, no patient data."""
    table = training_set.table
    labels = table.column("label")
    labelled = len(labels) - labels.null_count
    positives = int(pc.sum(labels).as_py() or 0)
    sites = []
    for site in sorted(set(table.column("site").to_pylist()), key=str):
        mask = pc.equal(table.column("site"), site)
        site_labels = labels.filter(mask)
        known = len(site_labels) - site_labels.null_count
        site_positives = int(pc.sum(site_labels).as_py() or 0)
        prevalence = round(site_positives / known, 4) if known else None
        sites.append({"site": site, "rows": len(site_labels), "labelled": known, "positives": site_positives,
                      "prevalence": prevalence})
    rows = max(table.num_rows, 1)
    missingness = [
        {"feature": name, "missing": training_set.missing.get(name, 0),
         "fraction": round(training_set.missing.get(name, 0) / rows, 4)}
        for name in training_set.feature_names
    ]
    return {
        "name": training_set.spec.name,
        "rows": table.num_rows,
        "labelled": labelled,
        "censored": labels.null_count,
        "positives": positives,
        "prevalence": round(positives / labelled, 4) if labelled else None,
        "sites": sites,
        "missingness": missingness,
        "fingerprint": training_set.fingerprint.to_dict(),
    }
