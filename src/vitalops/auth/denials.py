"""Failed authentication, audited as counts per window rather than a row per request.

Anyone who can reach the API can send requests without a valid key; writing an audit event for
each would let them flood the trail and hold the database's write lock. Instead each process
counts failures per (reason, route, source, window of ``window_seconds``) and appends one audit
event per such group, ``auth.failed`` with ``{"reason", "source", "window_start",
"window_seconds", "count"}``, when the window has closed: on the next failure after it closed,
on the periodic flush the app runs, and at shutdown. Rows are bounded: at most
``max_sources`` distinct sources per window (the rest count under ``"other"``), and reasons and
routes are bounded sets (route templates, never paths). Each failure is still logged at once, as
reason, route and source, with no credentials and no patient data.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from vitalops.audit import append
from vitalops.core.clock import isoformat_utc, utcnow
from vitalops.db.engine import Database
from vitalops.errors import ServiceUnavailable

log = logging.getLogger("vitalops.auth.denials")
WINDOW_SECONDS = 60
MAX_SOURCES_PER_WINDOW = 100
OTHER_SOURCE = "other"

_Key = tuple[datetime, str, str, str]  # window start, reason, route, source


class DenialWindows:
    """Per-process counts of failed authentication, flushed to the audit trail per closed window."""

    def __init__(self, window_seconds: int = WINDOW_SECONDS, max_sources: int = MAX_SOURCES_PER_WINDOW,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.window = timedelta(seconds=window_seconds)
        self.max_sources = max_sources
        self.clock = clock
        self._counts: dict[_Key, int] = defaultdict(int)
        self._sources: dict[datetime, set[str]] = defaultdict(set)
        self._lock = threading.Lock()

    def _window_start(self, moment: datetime) -> datetime:
        seconds = int(self.window.total_seconds())
        epoch = int(moment.timestamp())
        return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)

    def record(self, database: Database, *, reason: str, route: str, source: str) -> None:
        """Count one failure (logged now, audited with its window); flush windows that have closed."""
        now = self.clock()
        start = self._window_start(now)
        with self._lock:
            sources = self._sources[start]
            if source not in sources and len(sources) >= self.max_sources:
                source = OTHER_SOURCE
            sources.add(source)
            self._counts[(start, reason, route, source)] += 1
            due = any(window + self.window <= now for window in self._sources)
        log.info("authentication failed", extra={"reason": reason, "route": route, "source": source})
        if due:
            try:
                self.flush(database)
            except ServiceUnavailable:  # kept for the next flush; the 401 still goes out
                log.warning("denial counts could not be written yet", extra={"reason": reason})

    def pending(self) -> int:
        """Failures counted and not yet in the audit trail."""
        with self._lock:
            return sum(self._counts.values())

    def flush(self, database: Database, *, everything: bool = False) -> int:
        """Append one audit event per group of closed windows (all windows with ``everything``); returns events."""
        now = self.clock()
        with self._lock:
            closed = {key: count for key, count in self._counts.items()
                      if everything or key[0] + self.window <= now}
            for key in closed:
                del self._counts[key]
            for start in {key[0] for key in closed}:
                if not any(key[0] == start for key in self._counts):
                    self._sources.pop(start, None)
        if not closed:
            return 0
        try:
            with database.session() as session:
                for (start, reason, route, source), count in sorted(closed.items()):
                    append(session, actor="anonymous", action="auth.failed", object_type="route", object_id=route,
                           payload={"reason": reason, "source": source, "window_start": isoformat_utc(start),
                                    "window_seconds": int(self.window.total_seconds()), "count": count})
        except Exception:
            with self._lock:  # not lost: counted again at the next flush
                for key, count in closed.items():
                    self._counts[key] += count
                    self._sources[key[0]].add(key[3])
            raise
        return len(closed)
