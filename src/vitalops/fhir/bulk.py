"""FHIR Bulk Data ``$export`` client (Bulk Data Access IG v2): kick-off, polling, download, resume.

Flow: a GET kick-off with ``Prefer: respond-async`` answers 202 with the job's status URL in
``Content-Location``; the status URL answers 202 (with ``Retry-After`` and ``X-Progress``) until
the export is done, then 200 with the completion manifest (``transactionTime``, ``request``,
``requiresAccessToken``, ``output[{type, url, count}]``, ``error[]``); each output file is then
downloaded, with the bearer token when ``requiresAccessToken`` is true.

Resumable: ``out_dir/.bulk-export-state.json`` records the request, the status URL, the manifest
and each file's byte size and sha256 once complete. A rerun with the same request resumes the
same job (no new kick-off) and fetches only the files not yet complete; a file is written to
``<name>.part`` and renamed when whole. Output files are ``<Type>.ndjson`` (``<Type>.NNN.ndjson``
when a type has several) so that ``vitalops.fhir.readers.iter_resources(out_dir)`` reads them;
error files are kept as hidden ``.error.NNN.ndjson``, which the readers skip.

Errors carry the HTTP status and the server's OperationOutcome issue code, never its diagnostics
text (which can quote a patient's data).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx
import orjson

from vitalops.core.clock import isoformat_utc, utcnow
from vitalops.errors import (
    Conflict,
    InvalidInput,
    PermissionDenied,
    ServiceUnavailable,
    Unauthenticated,
    VitalOpsError,
)
from vitalops.fhir.bulk_transport import BulkTransport, issue_code
from vitalops.fhir.smart import BackendServicesAuth

STATE_FILE = ".bulk-export-state.json"
STATE_VERSION = 1
#: Waits between status polls when the server gives no Retry-After: start, growth, ceiling (seconds).
DEFAULT_POLL_SECONDS, POLL_GROWTH, MAX_DEFAULT_POLL_SECONDS = 1.0, 1.5, 60.0

ProgressCallback = Callable[[str, float | None], None]

_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")


def kickoff_url(
    base_url: str, *, level: str = "system", since: datetime | None = None, types: Sequence[str] | None = None
) -> str:
    """The ``$export`` kick-off URL for ``level`` (``system``, ``patient`` or ``group:<id>``).

    Raises InvalidInput for an unknown level, a bad group id or type name, or a naive ``since``.
    """
    base = base_url.rstrip("/")
    if level == "system":
        path = "/$export"
    elif level == "patient":
        path = "/Patient/$export"
    elif level.startswith("group:") and _FHIR_ID.match(level.removeprefix("group:")):
        path = f"/Group/{level.removeprefix('group:')}/$export"
    else:
        raise InvalidInput("export level must be system, patient or group:<id>")
    params: dict[str, str] = {"_outputFormat": "application/fhir+ndjson"}
    if since is not None:
        if since.tzinfo is None:
            raise InvalidInput("since must carry a time zone")
        params["_since"] = isoformat_utc(since)
    if types:
        bad = [t for t in types if not _RESOURCE_TYPE.match(t)]
        if bad:
            raise InvalidInput(f"not a FHIR resource type: {', '.join(bad)}")
        params["_type"] = ",".join(types)
    return f"{base}{path}?{urlencode(params, safe=',/:')}"


def download_export(
    base_url: str,
    out_dir: Path,
    *,
    level: str = "system",
    since: datetime | None = None,
    types: Sequence[str] | None = None,
    auth: BackendServicesAuth | None = None,
    progress: ProgressCallback | None = None,
    poll_max_seconds: float = 3600,
    http: httpx.Client | None = None,
) -> list[Path]:
    """Run (or resume) a bulk export into ``out_dir`` and return the output NDJSON files, in manifest order.

    Raises InvalidInput / Unauthenticated / PermissionDenied when the server refuses the request
    (4xx), ServiceUnavailable when it fails (5xx) or the export is not complete within
    ``poll_max_seconds`` (rerun to resume), Conflict when ``out_dir`` holds a different export.
    """
    request_url = kickoff_url(base_url, level=level, since=since, types=types)
    out_dir.mkdir(parents=True, exist_ok=True)
    client = http or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True)
    try:
        transport = BulkTransport(client, auth)
        state = _load_state(out_dir)
        if state is not None and state["request"] != request_url:
            raise Conflict(f"{out_dir.name} holds a different bulk export; use an empty folder")
        if state is None:
            state = _start(transport, request_url, out_dir, progress)
        if state.get("manifest") is None:
            try:
                manifest = _poll(transport, state["status_url"], poll_max_seconds, progress)
            except _JobGone:
                # The server forgot the job (expired or restarted): begin again rather than fail forever.
                state = _start(transport, request_url, out_dir, progress)
                manifest = _poll(transport, state["status_url"], poll_max_seconds, progress)
            state["manifest"] = manifest
            state["files"] = _plan_files(manifest)
            _save_state(out_dir, state)
        paths = _download_all(transport, state, out_dir, progress)
        if not state.get("released"):
            transport.release(state["status_url"])
            state["released"] = True
            _save_state(out_dir, state)
        return paths
    finally:
        if http is None:
            client.close()


class _JobGone(Exception):
    """The status URL answered 404 or 410 before the export completed."""


def _start(
    transport: BulkTransport, request_url: str, out_dir: Path, progress: ProgressCallback | None
) -> dict[str, Any]:
    _report(progress, "kick-off", 0.0)
    response = transport.request("GET", request_url, accept="application/fhir+json", prefer_async=True)
    if response.status_code != 202:
        raise _export_error(response, "kick-off")
    location = response.headers.get("Content-Location")
    if not location:
        raise InvalidInput("bulk export kick-off answered 202 without Content-Location")
    state = {
        "version": STATE_VERSION,
        "request": request_url,
        "status_url": urljoin(request_url, location),
        "kicked_off_at": isoformat_utc(utcnow()),
        "manifest": None,
        "files": [],
    }
    _save_state(out_dir, state)
    return state


def _poll(
    transport: BulkTransport, status_url: str, poll_max_seconds: float, progress: ProgressCallback | None
) -> dict[str, Any]:
    deadline = time.monotonic() + poll_max_seconds
    default_wait = DEFAULT_POLL_SECONDS
    while True:
        response = transport.request("GET", status_url, accept="application/json")
        if response.status_code == 200:
            return _manifest(response)
        if response.status_code in (404, 410):
            raise _JobGone()
        if response.status_code != 202:
            raise _export_error(response, "status")
        match = _PERCENT.search(response.headers.get("X-Progress", ""))
        _report(progress, "exporting", min(float(match.group(1)), 100.0) / 100 if match else None)
        wait = transport.retry_after(response)
        if wait is None:
            wait, default_wait = default_wait, min(default_wait * POLL_GROWTH, MAX_DEFAULT_POLL_SECONDS)
        if time.monotonic() + wait > deadline:
            raise ServiceUnavailable(
                f"bulk export not complete within {poll_max_seconds:g} s; run again to resume the same job",
                details={"status_url_saved": True},
            )
        transport.sleep(wait)


def _manifest(response: httpx.Response) -> dict[str, Any]:
    try:
        manifest = response.json()
    except ValueError as exc:
        raise InvalidInput("bulk export manifest is not JSON") from exc
    outputs = manifest.get("output") if isinstance(manifest, dict) else None
    errors = manifest.get("error", []) if isinstance(manifest, dict) else None
    entries = (
        [*(outputs or []), *(errors or [])]
        if isinstance(outputs, list) and isinstance(errors, list)
        else None
    )
    if entries is None or not all(
        isinstance(e, dict) and isinstance(e.get("url"), str) and _RESOURCE_TYPE.match(str(e.get("type")))
        for e in entries
    ):
        raise InvalidInput("bulk export manifest is malformed (output/error entries need type and url)")
    return dict(manifest)


def _plan_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Local names for every manifest file: ``<Type>.ndjson``, or numbered when a type has several."""
    per_type: dict[str, int] = {}
    for entry in manifest["output"]:
        per_type[entry["type"]] = per_type.get(entry["type"], 0) + 1
    seen: dict[str, int] = {}
    files = []
    for entry in manifest["output"]:
        kind = entry["type"]
        seen[kind] = seen.get(kind, 0) + 1
        name = f"{kind}.ndjson" if per_type[kind] == 1 else f"{kind}.{seen[kind]:03d}.ndjson"
        files.append(
            {
                "kind": "output",
                "type": kind,
                "url": entry["url"],
                "name": name,
                "count": entry.get("count"),
                "bytes": None,
                "sha256": None,
            }
        )
    for number, entry in enumerate(manifest.get("error", []), start=1):
        files.append(
            {
                "kind": "error",
                "type": entry["type"],
                "url": entry["url"],
                "name": f".error.{number:03d}.ndjson",
                "count": entry.get("count"),
                "bytes": None,
                "sha256": None,
            }
        )
    return files


def _download_all(
    transport: BulkTransport, state: dict[str, Any], out_dir: Path, progress: ProgressCallback | None
) -> list[Path]:
    requires_token = bool(state["manifest"].get("requiresAccessToken"))
    files = state["files"]
    for done, entry in enumerate(files):
        target = out_dir / entry["name"]
        if entry["sha256"] and _is_intact(target, entry["bytes"], entry["sha256"]):
            continue
        _report(progress, f"downloading {entry['type']}", done / len(files))
        size, digest = transport.download(entry["url"], target, send_token=requires_token)
        entry["bytes"], entry["sha256"] = size, digest
        _save_state(out_dir, state)
    _report(progress, "downloaded", 1.0)
    return [out_dir / entry["name"] for entry in files if entry["kind"] == "output"]


def _is_intact(path: Path, size: int | None, sha256: str) -> bool:
    if not path.is_file() or path.stat().st_size != size:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == sha256


def _export_error(response: httpx.Response, stage: str) -> VitalOpsError:
    """The error for a refused or failed export step: HTTP status and issue code, no server text."""
    status = response.status_code
    code = issue_code(response)
    message = f"bulk export {stage} failed: HTTP {status}" + (f" (issue code {code})" if code else "")
    details = {"stage": stage, "status": status, "issue_code": code}
    if status == 401:
        return Unauthenticated(message, details=details)
    if status == 403:
        return PermissionDenied(message, details=details)
    if status < 500:
        return InvalidInput(message, details=details)
    return ServiceUnavailable(message, details=details)


def _load_state(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        state = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"{out_dir.name}/{STATE_FILE} is corrupt; remove it to start a new export"
        ) from exc
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise InvalidInput(f"{out_dir.name}/{STATE_FILE} has an unknown format")
    return state


def _save_state(out_dir: Path, state: dict[str, Any]) -> None:
    """Write the state atomically, so an interruption leaves the old or the new state, never half of one."""
    path = out_dir / STATE_FILE
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))
    os.replace(scratch, path)


def _report(progress: ProgressCallback | None, stage: str, fraction: float | None) -> None:
    if progress is not None:
        progress(stage, fraction)
