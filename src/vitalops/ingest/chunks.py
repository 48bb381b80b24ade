"""The input of an ingest batch as a stream of normalized chunks.

A plain NDJSON file of Observations (what a Bulk Data ``$export`` writes for the largest resource
type) goes through ``columnar_observations`` a chunk of lines at a time (which hands a chunk it
cannot read to ``fast_observations``); every other file is read
record by record (``vitalops.fhir.readers``) and normalized by the per-resource path, in chunks of
the same size. Both give the same facts and counts for the same input; the choice only changes
how fast they come.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from vitalops.fhir.readers import SourceRecord, is_plain_ndjson, iter_resources, source_files
from vitalops.ingest.columnar_observations import ColumnarObservations
from vitalops.ingest.extract_common import Context
from vitalops.ingest.normalize import ChunkNormalization, NormalizeResult

#: Lines read to find the resource type of an NDJSON file (blank lines are allowed before it).
_SNIFF_LINES = 8


def normalized_chunks(
    paths: Sequence[Path], ctx: Context, *, chunk_resources: int, batch_id: str
) -> Iterator[NormalizeResult]:
    """The facts of ``paths`` (files and folders, read in ``iter_resources`` order), a chunk of at
    most about ``chunk_resources`` records at a time. Raises FileNotFoundError for a missing path."""
    with ColumnarObservations(ctx) as fast:
        pending = ChunkNormalization(ctx)
        for path in paths:
            for file in source_files(path):
                if _holds_observations(file):
                    if pending.read:
                        yield pending.result(batch_id)
                        pending = ChunkNormalization(ctx)
                    yield from _observation_chunks(file, fast, ctx, chunk_resources, batch_id)
                    continue
                for record in iter_resources(file):
                    pending.add_record(record)
                    if pending.read >= chunk_resources:
                        yield pending.result(batch_id)
                        pending = ChunkNormalization(ctx)
        if pending.read:
            yield pending.result(batch_id)


def _holds_observations(file: Path) -> bool:
    """True for a plain NDJSON file whose first resource is an Observation."""
    if not is_plain_ndjson(file):
        return False
    try:
        with file.open("rb") as handle:
            for line in itertools.islice(handle, _SNIFF_LINES):
                if line.strip():
                    first = orjson.loads(line)
                    return type(first) is dict and first.get("resourceType") == "Observation"
    except (OSError, orjson.JSONDecodeError):
        return False
    return False


def _observation_chunks(
    file: Path, fast: ColumnarObservations, ctx: Context, chunk_lines: int, batch_id: str
) -> Iterator[NormalizeResult]:
    name = str(file)
    line_no = 1
    with file.open("rb") as handle:
        while True:
            chunk = ChunkNormalization(ctx)
            try:
                lines = list(itertools.islice(handle, chunk_lines))
            except OSError as exc:
                # As ``iter_resources`` does: say where the file stopped being readable.
                detail = f"file could not be read ({type(exc).__name__})"
                chunk.add_record(SourceRecord(name, line_no, None, "file.unreadable", detail))
                yield chunk.result(batch_id)
                return
            if not lines:
                return
            with _collector_paused():
                fast.add_lines(chunk, name, line_no, lines)
                result = chunk.result(batch_id)
            line_no += len(lines)
            if chunk.read:
                yield result


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a chunk is built: a chunk allocates hundreds of
    thousands of acyclic tuples, each allocation counts toward a collection, and the collections
    (which find nothing) cost as much as the normalization itself."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
