"""The input of an ingest batch as a stream of normalized chunks.

A plain NDJSON file of Observations (what a Bulk Data ``$export`` writes for the largest resource
type) goes through ``columnar_observations`` a chunk of lines at a time (which hands each line it
does not take to the per-resource path); every other file is read record by record
(``vitalops.fhir.readers``) and normalized by the per-resource path, in chunks of the same size.
Both give the same facts and counts for the same input; the choice only changes how fast they come.
Medication files are indexed first, and orders naming a Medication not read yet are normalized
after everything else (``vitalops.ingest.medications``).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import orjson

from vitalops.fhir.readers import SourceRecord, is_plain_ndjson, iter_resources, source_files
from vitalops.ingest.columnar_observations import ColumnarObservations
from vitalops.ingest.extract_common import Context
from vitalops.ingest.normalize import ChunkNormalization, NormalizeResult

#: Lines read to find the resource type of an NDJSON file (blank lines are allowed before it).
_SNIFF_LINES = 8
_READ_BUFFER = 1 << 20  # bytes per read of an Observation file (the default 8 KiB means a call per 11 lines)


def normalized_chunks(
    paths: Sequence[Path], ctx: Context, *, chunk_resources: int, batch_id: str
) -> Iterator[NormalizeResult]:
    """The facts of ``paths`` (files and folders, read in ``iter_resources`` order), a chunk of at
    most about ``chunk_resources`` records at a time. Raises FileNotFoundError for a missing path."""
    for chunk in pending_chunks(paths, ctx, chunk_resources=chunk_resources):
        yield build_chunk(chunk, batch_id)


def build_chunk(chunk: ChunkNormalization, batch_id: str) -> NormalizeResult:
    """``chunk.result(batch_id)`` with the garbage collector paused (see ``collector_paused``)."""
    with collector_paused():
        return chunk.result(batch_id)


def pending_chunks(paths: Sequence[Path], ctx: Context, *, chunk_resources: int) -> Iterator[ChunkNormalization]:
    """As ``normalized_chunks``, but each chunk normalized and not yet built into a facts table
    (``build_chunk``), so that a caller can build one chunk while the next is read."""
    fast = ColumnarObservations(ctx)
    pending = ChunkNormalization(ctx)
    files = [file for path in paths for file in source_files(path)]
    _index_medication_files(files, ctx)
    ctx.medications.hold_unresolved()
    for file in files:
        if _holds_observations(file):
            if pending.read:
                yield pending
                pending = ChunkNormalization(ctx)
            yield from _observation_chunks(file, fast, ctx, chunk_resources)
            continue
        for record in iter_resources(file):
            pending.add_record(record)
            if pending.read >= chunk_resources:
                yield pending
                pending = ChunkNormalization(ctx)
    # Orders whose Medication came later in the input (a Bundle's, a file read after theirs).
    for record in ctx.medications.release():
        pending.add_record(record)
        if pending.read >= chunk_resources:
            yield pending
            pending = ChunkNormalization(ctx)
    if pending.read:
        yield pending


def _index_medication_files(files: Sequence[Path], ctx: Context) -> None:
    """Index the Medications of every NDJSON file whose first resource is a Medication (a Bulk
    Data export's ``Medication.ndjson``) before anything else is read, so that orders naming them
    resolve as they are read, wherever the file sorts. Other Medications are indexed where the
    batch meets them."""
    for file in files:
        if _first_resource_type(file) != "Medication":
            continue
        for record in iter_resources(file):
            if record.resource is not None and record.resource.get("resourceType") == "Medication":
                ctx.medications.add(record.resource)


def _holds_observations(file: Path) -> bool:
    """True for a plain NDJSON file whose first resource is an Observation."""
    return _first_resource_type(file) == "Observation"


def _first_resource_type(file: Path) -> object:
    """The ``resourceType`` of the first line of a plain NDJSON file (None for any other file, or
    one whose first lines are not a JSON object)."""
    if not is_plain_ndjson(file):
        return None
    try:
        with file.open("rb") as handle:
            for line in itertools.islice(handle, _SNIFF_LINES):
                if line.strip():
                    first = orjson.loads(line)
                    return first.get("resourceType") if type(first) is dict else None
    except (OSError, orjson.JSONDecodeError):
        return None
    return None


def _observation_chunks(
    file: Path, fast: ColumnarObservations, ctx: Context, chunk_lines: int
) -> Iterator[ChunkNormalization]:
    """The chunks of an Observation file. The first is a quarter of the size of the rest: nothing
    commits while it is normalized, so it should not take long."""
    name = str(file)
    line_no = 1
    with file.open("rb", buffering=_READ_BUFFER) as handle:
        failure = None
        while failure is None:
            lines, failure = _next_lines(handle, chunk_lines if line_no > 1 else max(1, chunk_lines // 4))
            if not lines:
                break
            chunk = ChunkNormalization(ctx)
            with collector_paused():
                fast.add_lines(chunk, name, line_no, lines)
            line_no += len(lines)
            if chunk.read:
                yield chunk
        if failure is not None:
            # As ``iter_resources`` does: say where the file stopped being readable.
            chunk = ChunkNormalization(ctx)
            detail = f"file could not be read ({type(failure).__name__})"
            chunk.add_record(SourceRecord(name, line_no, None, "file.unreadable", detail))
            yield chunk


def _next_lines(handle: BinaryIO, count: int) -> tuple[list[bytes], OSError | None]:
    """The next ``count`` lines (fewer at the end), or the error that stopped the reading."""
    try:
        return list(itertools.islice(handle, count)), None
    except OSError as exc:
        return [], exc


_pauses = 0
_pauses_lock = threading.Lock()
_collector_was_enabled = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a chunk is normalized or built: a chunk allocates
    hundreds of thousands of acyclic objects, each allocation counts toward a collection, and the
    collections (which find nothing) cost as much as the normalization itself. Pauses may overlap
    (one thread reads a chunk while another builds the last): the collector runs again when the
    last one ends."""
    global _pauses, _collector_was_enabled
    with _pauses_lock:
        if _pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pauses_lock:
            _pauses -= 1
            if _pauses == 0 and _collector_was_enabled:
                gc.enable()
