"""Shadow scoring off the response path: a worker thread per process scores and logs shadows.

A request hands its shadow work to the queue and returns at once: the connection is free for the
client's next request, which it would not be while a background task of the same request ran. The
queue is bounded; when it is full (the shadow cannot keep up), a shadow is dropped and counted,
never the served prediction delayed. A shadow that fails is logged (without its data) and counted.
The same bounded worker carries other work that must not delay a response (publishing a
RiskAssessment to the EHR, ``serving.publishing``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("vitalops.serving.shadows")


class ShadowQueue:
    def __init__(self, maxsize: int = 10_000) -> None:
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.scored = 0
        self.dropped = 0
        self.failed = 0

    def submit(self, work: list[Callable[[], None]]) -> None:
        """Queue each piece of shadow work; drop (and count) what does not fit."""
        if not work:
            return
        self._start()
        for item in work:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.dropped += 1

    def join(self) -> None:
        """Wait until every queued shadow has run (tests, shutdown)."""
        self._queue.join()

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="vitalops-shadows", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            try:
                work()
                self.scored += 1
            except Exception as error:  # noqa: BLE001 - a shadow never fails anything but itself
                self.failed += 1
                log.warning("shadow scoring failed", extra={"error_type": type(error).__name__})
            finally:
                self._queue.task_done()
