"""Ingest batches: read FHIR files, normalize, append facts and quarantine to the lake, record the
batch and its audit events.

A batch streams its input in chunks (``VITALOPS_INGEST_CHUNK_ROWS`` resources, default 50,000), so
memory stays flat, and commits each chunk's facts to Delta atomically, one chunk committing while
the next is normalized (``vitalops.ingest.chunks``: plain Observation NDJSON takes the fast path).
Facts are de-duplicated by ``fact_id`` on append, so a batch killed midway and run again ends with
exactly the facts of one clean run. Each chunk's facts also go to the online store
(``vitalops.features.online_store``) right after its lake commit, as upserts by fact id, so the
rerun leaves that equal to one clean run too. The batch row and its ``ingest.batch.started`` and
``ingest.batch.completed`` audit events are written in the same transactions (counts only, no
patient data).
"""

from __future__ import annotations

import os
import socket
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from vitalops import audit
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import isoformat_utc, utcnow
from vitalops.core.ids import new_id
from vitalops.core.settings import get_settings
from vitalops.db import Database
from vitalops.db.tables.ingest import IngestBatchRow
from vitalops.errors import InvalidInput
from vitalops.features.online_store import open_online_store, registered_lookback_us
from vitalops.ingest.chunks import build_chunk, pending_chunks
from vitalops.ingest.extract_common import Context
from vitalops.ingest.normalize import ChunkNormalization, NormalizeResult
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.lake.facts import FactsStore
from vitalops.lake.quarantine import QuarantineStore
from vitalops.sites import list_sites, require_site
from vitalops.terminology import load_terminology

#: The site of a resource that carries no site tag when no ``--site`` is given, and of a record
#: that could not be read at all (a line that is not JSON).
DEFAULT_SITE = "unknown"
DEFAULT_CHUNK_RESOURCES = 50_000
CHUNK_ENV = "VITALOPS_INGEST_CHUNK_ROWS"
_COMMITS_QUEUED = 2  # chunks normalized and waiting for (or in) their commit

#: Called after each chunk with the number of resources read so far.
Progress = Callable[[int], None]


@dataclass
class IngestReport:
    """What one batch did. ``read == ingested + skipped + quarantined``."""

    batch: str
    read: int = 0
    ingested: int = 0
    skipped: int = 0
    quarantined: int = 0
    facts: int = 0  # rows actually added to the facts table (after de-duplication)
    duplicates: int = 0  # facts already present (a rerun) or repeated in the input
    per_site: dict[str, int] = field(default_factory=dict)  # resources ingested per site
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    facts_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Where a running batch's row names its process (host and pid), so that a killed one can be told.
RUNNING_ON = "running_on"


def _chunk_resources() -> int:
    raw = os.environ.get(CHUNK_ENV)
    if not raw:
        return DEFAULT_CHUNK_RESOURCES
    try:
        size = int(raw)
    except ValueError:
        raise InvalidInput(f"{CHUNK_ENV} must be a whole number") from None
    if size < 1:
        raise InvalidInput(f"{CHUNK_ENV} must be at least 1")
    return size


def ingest_paths(
    database: Database,
    principal: Principal,
    paths: Sequence[Path],
    *,
    site: str | None = None,
    lake_root: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest FHIR files and folders as one batch and return its report.

    ``site`` names the site of resources without a site tag; a site tag (``meta.tag``) must be a
    tag value of a registered site (``vitalops sites add``), whose code the resource then takes, or
    the resource is quarantined (``site.unregistered``). Raises PermissionDenied without
    DATA_INGEST and InvalidInput when a path does not exist or ``site`` is not registered; bad
    content never raises, it is quarantined.
    """
    authorize(database, principal, Permission.DATA_INGEST, object_type="ingest_batch", object_id="new")
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InvalidInput(f"no such file or folder: {', '.join(missing)}")
    settings = get_settings()
    lake_root = lake_root or settings.lake_root
    pseudonyms = Pseudonymizer(settings.pseudonym_key.get_secret_value().encode())
    terminology = load_terminology(settings.local_codes_file)
    with database.session() as session:
        if site is not None:
            require_site(session, site)
        registered = {tag: known.code for known in list_sites(session) for tag in known.tag_values}
    mark_interrupted(database, principal)
    batch_id = new_id("batch")
    started = utcnow()
    source = ", ".join(str(p) for p in paths)
    with database.session() as session:
        session.add(
            IngestBatchRow(
                id=batch_id,
                site=site,
                source=source[:4000],
                started_at=started,
                finished_at=None,
                status="running",
                counts_json=orjson.dumps({RUNNING_ON: _this_process()}).decode(),
                started_by=principal.name,
            )
        )
        audit.append(
            session,
            actor=principal,
            action="ingest.batch.started",
            object_type="ingest_batch",
            object_id=batch_id,
            payload={"paths": len(paths), "site": site, "terminology_version": terminology.version},
        )
    report = IngestReport(batch=batch_id)
    facts_store = FactsStore(lake_root)
    online = open_online_store(settings.online_store)
    retention_us = registered_lookback_us(database)
    quarantine = QuarantineStore(lake_root)
    skipped: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    per_site: Counter[str] = Counter()
    ctx = Context(site or DEFAULT_SITE, pseudonyms, terminology, isoformat_utc(started), registered)
    chunks = pending_chunks(paths, ctx, chunk_resources=_chunk_resources())

    def commit(chunk: ChunkNormalization) -> NormalizeResult:
        result = build_chunk(chunk, batch_id)
        result.added = facts_store.append(result.facts, unique=True)  # built facts never repeat an id
        # after the lake commit, as upserts by fact id: a rerun writes these facts over themselves,
        # which repairs a crash between the two writes
        online.write(result.facts, retention_us)
        quarantine.append(
            result.quarantined, batch_id=batch_id, default_site=site or DEFAULT_SITE, quarantined_at=utcnow()
        )
        return result

    def count(result: NormalizeResult) -> None:
        report.read += result.read
        report.ingested += result.ingested
        report.facts += result.added
        report.duplicates += result.duplicates + result.facts.num_rows - result.added
        skipped.update(result.skipped)
        rules.update(q.rule for q in result.quarantined)
        per_site.update(result.ingested_per_site)
        _record_progress(database, batch_id, report, rules)
        if progress is not None:
            progress(report.read)

    # Chunks are built into facts tables and committed to Delta (mostly native code, outside the
    # GIL) while the next is read and normalized; up to ``_COMMITS_QUEUED`` wait their turn, so a
    # slow commit does not stall the reading. Commits stay one at a time and in input order, so a
    # killed batch still leaves whole chunks.
    queued: deque[Future[NormalizeResult]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-commit") as committer:
        try:
            for chunk in chunks:
                if len(queued) == _COMMITS_QUEUED:
                    count(queued.popleft().result())
                queued.append(committer.submit(commit, chunk))
            while queued:
                count(queued.popleft().result())
        except BaseException:
            pending = [future for future in queued if not future.cancel()]
            wait(pending)  # a commit under way ends whole before the batch is marked failed
            _finish(database, principal, batch_id, report, status="failed")
            online.close()
            raise
    online.close()
    report.skipped = sum(skipped.values())
    report.quarantined = sum(rules.values())
    report.skipped_reasons = dict(sorted(skipped.items()))
    report.quarantine_reasons = dict(sorted(rules.items()))
    report.per_site = dict(sorted(per_site.items()))
    if report.facts:
        facts_store.compact()
    report.facts_version = facts_store.version
    _finish(database, principal, batch_id, report, status="completed")
    return report


def _this_process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _record_progress(database: Database, batch_id: str, report: IngestReport, rules: Counter[str]) -> None:
    """What the running batch has committed so far, kept on its row (an interrupted batch shows it)."""
    counts = {"read": report.read, "ingested": report.ingested, "facts": report.facts,
              "quarantined": sum(rules.values()), RUNNING_ON: _this_process()}
    with database.session() as session:
        row = session.get(IngestBatchRow, batch_id)
        if row is not None:
            row.counts_json = orjson.dumps(counts, option=orjson.OPT_SORT_KEYS).decode()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_interrupted(database: Database, principal: Principal) -> list[str]:
    """Mark ``interrupted`` every batch still ``running`` whose process on this host is gone (killed),
    keeping the counts it had committed; audited. A batch running on another host is left alone.
    Returns the batch ids marked."""
    host = socket.gethostname()
    marked = []
    with database.session() as session:
        for row in session.scalars(select(IngestBatchRow).where(IngestBatchRow.status == "running")):
            counts = orjson.loads(row.counts_json or "{}")
            running_on = counts.pop(RUNNING_ON, None)
            if not isinstance(running_on, dict) or running_on.get("host") != host:
                continue
            if _alive(int(running_on.get("pid", 0))):
                continue
            row.status = "interrupted"
            row.finished_at = utcnow()
            row.counts_json = orjson.dumps(counts, option=orjson.OPT_SORT_KEYS).decode()
            audit.append(session, actor=principal, action="ingest.batch.interrupted", object_type="ingest_batch",
                         object_id=row.id, payload={k: v for k, v in counts.items() if not isinstance(v, dict)})
            marked.append(row.id)
    return marked


def _finish(database: Database, principal: Principal, batch_id: str, report: IngestReport, *, status: str) -> None:
    counts = report.to_dict()
    counts.pop("batch")
    with database.session() as session:
        row = session.get(IngestBatchRow, batch_id)
        if row is None:  # pragma: no cover - the row was written at the start of this batch
            raise InvalidInput(f"ingest batch {batch_id} vanished")
        row.status = status
        row.finished_at = utcnow()
        row.counts_json = orjson.dumps(counts, option=orjson.OPT_SORT_KEYS).decode()
        audit.append(
            session,
            actor=principal,
            action=f"ingest.batch.{status}",
            object_type="ingest_batch",
            object_id=batch_id,
            payload={k: v for k, v in counts.items() if not isinstance(v, dict)},
        )


def list_batches(database: Database, *, limit: int = 50) -> list[dict[str, Any]]:
    """The most recent ingest batches, newest first, as JSON-safe dicts."""
    with database.session() as session:
        rows = session.scalars(select(IngestBatchRow).order_by(IngestBatchRow.started_at.desc()).limit(limit))
        return [
            {
                "batch": r.id,
                "site": r.site,
                "status": r.status,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "started_by": r.started_by,
                "counts": orjson.loads(r.counts_json),
            }
            for r in rows
        ]
