"""Group commit for the prediction log: concurrent requests share one transaction, each waits for it.

A request hands its log rows (the prediction and its audit event) to the writer and blocks until
the transaction holding them has committed, so a prediction is never returned before it is logged
and audited, and its row and audit event always commit together. The writer takes whatever is
waiting (up to ``max_batch`` requests) into one transaction: on SQLite that is one write lock and
one commit for many requests instead of one each. If a batch fails, each request of it is retried
in a transaction of its own, so one bad request cannot fail the others.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from vitalops.db import Database

LogWork = Callable[[Session], None]


@dataclass
class _Ticket:
    work: LogWork
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class LogWriter:
    """One writer thread per worker process; ``write`` blocks until its work has committed."""

    def __init__(self, database: Database, *, max_batch: int = 128) -> None:
        self.database = database
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Ticket] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def write(self, work: LogWork) -> None:
        """Run ``work`` (adds rows to the session it is given) in a committed transaction; re-raises its error."""
        self._start()
        ticket = _Ticket(work)
        self._queue.put(ticket)
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="vitalops-log-writer", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Ticket]) -> None:
        try:
            with self.database.session() as session:
                for ticket in batch:
                    ticket.work(session)
        except BaseException:  # noqa: BLE001 - isolated below, each request gets its own outcome
            for ticket in batch:
                try:
                    with self.database.session() as session:
                        ticket.work(session)
                except BaseException as error:  # noqa: BLE001 - handed back to the waiting request
                    ticket.error = error
                ticket.done.set()
            return
        for ticket in batch:
            ticket.done.set()
