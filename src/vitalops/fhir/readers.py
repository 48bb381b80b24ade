"""Streaming readers of FHIR R4 JSON: bulk NDJSON (plain or gzip), Bundles, single resources and
folders of them.

Every resource comes out as a ``SourceRecord`` that names its file and line. Input that cannot
be read (a line that is not JSON, a truncated gzip stream, a Bundle entry without a resource)
comes out as a record with ``error`` set and ``resource`` None, so that the caller quarantines it
and carries on: a bad line never stops a batch.

Line numbers: 1-based line in an NDJSON file; for a Bundle, the 0-based entry index (as in the
FHIRPath ``Bundle.entry[i]``); 1 for a file holding a single resource. NDJSON is read line by
line (memory stays flat whatever the file size); a JSON file (a Bundle or one resource) is read
whole.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

#: Suffixes read from a folder; anything else in it is ignored.
NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
JSON_SUFFIXES = (".json", ".json.gz")
#: Top-level reference fields rewritten from ``urn:uuid:`` full URLs to ``Type/id`` inside a Bundle.
REFERENCE_FIELDS = ("subject", "patient", "encounter", "context", "medicationReference")


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One resource read from ``file`` at ``line``, or the reason (``error``, a rule id) it could not be."""

    file: str
    line: int
    resource: dict[str, Any] | None
    error: str | None = None
    detail: str | None = None


def _failed(file: str, line: int, rule: str, reason: str) -> SourceRecord:
    return SourceRecord(file, line, None, rule, reason)


def iter_resources(path: Path) -> Iterator[SourceRecord]:
    """Yield every resource under ``path`` (a file or a folder, read in sorted order).

    Never raises for bad content; raises FileNotFoundError only when ``path`` does not exist.
    """
    for file in source_files(path):
        yield from _iter_file(file)


def source_files(path: Path) -> list[Path]:
    """The files ``iter_resources`` reads under ``path``, in its order; raises FileNotFoundError
    when ``path`` does not exist."""
    path = Path(path)
    if path.is_dir():
        return [
            child
            for child in sorted(path.rglob("*"))
            if child.is_file() and not child.name.startswith(".") and _suffix_kind(child) is not None
        ]
    if not path.exists():
        raise FileNotFoundError(str(path))
    return [path]


def _suffix_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(NDJSON_SUFFIXES):
        return "ndjson"
    if name.endswith(JSON_SUFFIXES):
        return "json"
    return None


def _open(path: Path) -> Any:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _iter_file(path: Path) -> Iterator[SourceRecord]:
    kind = _suffix_kind(path) or _sniff(path)
    if kind == "ndjson":
        yield from _iter_ndjson(path)
    else:
        yield from _iter_json(path)


def _sniff(path: Path) -> str:
    """An unnamed file is NDJSON when its first line is a complete JSON object on its own."""
    try:
        with _open(path) as handle:
            first = handle.readline()
            rest = handle.readline()
    except (OSError, EOFError, zlib.error):
        return "json"
    if not rest:
        return "json"
    try:
        return "ndjson" if isinstance(orjson.loads(first), dict) else "json"
    except orjson.JSONDecodeError:
        return "json"


def _iter_ndjson(path: Path) -> Iterator[SourceRecord]:
    file = str(path)
    line_no = 0
    loads = orjson.loads
    try:
        with _open(path) as handle:
            for line_no, line in enumerate(handle, start=1):  # noqa: B007 - line_no is used after the loop
                if not line.strip():
                    continue
                try:
                    value = loads(line)
                except orjson.JSONDecodeError:
                    yield _failed(file, line_no, "json.invalid", "the line is not valid JSON")
                    continue
                if type(value) is dict and value.get("resourceType") != "Bundle":
                    yield SourceRecord(file, line_no, value)
                else:
                    yield from _records_of_value(file, line_no, value)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        # A truncated or corrupt gzip stream: what was read has been yielded; say where it stopped.
        yield _failed(file, line_no + 1, "file.truncated", f"stream ends early ({type(exc).__name__})")
    except OSError as exc:
        yield _failed(file, line_no + 1, "file.unreadable", f"file could not be read ({type(exc).__name__})")


def records_of_line(file: str, line_no: int, line: bytes) -> Iterator[SourceRecord]:
    """The records of one NDJSON line, exactly as ``iter_resources`` reads them: nothing for a
    blank line, an error record for a line that is not a JSON object, the entries of a Bundle."""
    if not line.strip():
        return
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        yield _failed(file, line_no, "json.invalid", "the line is not valid JSON")
        return
    yield from _records_of_value(file, line_no, value)


def _records_of_value(file: str, line_no: int, value: Any) -> Iterator[SourceRecord]:
    if type(value) is not dict:
        yield _failed(file, line_no, "json.not_object", "the line is not a JSON object")
    elif value.get("resourceType") == "Bundle":
        yield from _iter_bundle(file, value, line_no)
    else:
        yield SourceRecord(file, line_no, value)


def is_plain_ndjson(path: Path) -> bool:
    """True when ``iter_resources`` reads ``path`` as plain (not gzip) NDJSON by its suffix."""
    name = path.name.lower()
    return _suffix_kind(path) == "ndjson" and not name.endswith(".gz")


def _iter_json(path: Path) -> Iterator[SourceRecord]:
    file = str(path)
    try:
        with _open(path) as handle:
            content = handle.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        yield _failed(file, 1, "file.truncated", f"stream ends early ({type(exc).__name__})")
        return
    except OSError as exc:
        yield _failed(file, 1, "file.unreadable", f"file could not be read ({type(exc).__name__})")
        return
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        yield _failed(file, 1, "json.invalid", "the file is not valid JSON")
        return
    if not isinstance(value, dict):
        yield _failed(file, 1, "json.not_object", "the file is not a JSON object")
    elif value.get("resourceType") == "Bundle":
        yield from _iter_bundle(file, value, None)
    else:
        yield SourceRecord(file, 1, value)


def _iter_bundle(file: str, bundle: dict[str, Any], line: int | None) -> Iterator[SourceRecord]:
    """The entries of a Bundle of any type; nested Bundles are expanded too.

    With ``line`` set (a Bundle on one NDJSON line) every entry carries that line; otherwise the
    entry index. A DELETE entry of a transaction or batch carries no resource by the specification
    and is yielded with error ``bundle.delete_entry`` (the caller skips it); any other entry
    without a resource is an error ``bundle.entry_without_resource``.
    """
    entries = bundle.get("entry") or []
    full_urls: dict[str, str] = {}
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and isinstance(full_url, str) and full_url.startswith("urn:uuid:"):
            if "id" not in resource:
                resource["id"] = full_url.removeprefix("urn:uuid:")
            full_urls[full_url] = f"{resource.get('resourceType')}/{resource['id']}"
    for index, entry in enumerate(entries):
        where = index if line is None else line
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            request = entry.get("request") if isinstance(entry, dict) else None
            if isinstance(request, dict) and request.get("method") == "DELETE":
                yield _failed(file, where, "bundle.delete_entry", "a DELETE entry carries no resource")
            else:
                yield _failed(file, where, "bundle.entry_without_resource", "Bundle entry has no resource")
            continue
        if full_urls:
            _rewrite_references(resource, full_urls)
        if resource.get("resourceType") == "Bundle":
            yield from _iter_bundle(file, resource, where)
        else:
            yield SourceRecord(file, where, resource)


def _rewrite_references(resource: dict[str, Any], full_urls: dict[str, str]) -> None:
    for field in REFERENCE_FIELDS:
        ref = resource.get(field)
        if isinstance(ref, dict):
            target = full_urls.get(ref.get("reference", ""))
            if target is not None:
                resource[field] = {**ref, "reference": target}
