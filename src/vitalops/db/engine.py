"""Engine and session factory for SQLite (embedded) and PostgreSQL (production).

A ``Database`` is created by whoever owns the process (the API app factory, a CLI command,
a test fixture); nothing is created at import time.

Two kinds of transaction: ``session()`` for anything that may write (on SQLite it takes the write
lock at BEGIN, which is what serializes audit appenders across processes), and ``read_session()``
for reads, which never takes the write lock (SQLite: a deferred BEGIN on a connection in
``query_only`` mode, reading a WAL snapshot beside the writers; PostgreSQL: a READ ONLY
transaction). A write attempted in a read session fails instead of silently taking the lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vitalops.core.extras import import_extra
from vitalops.errors import ServiceUnavailable

_READ_ONLY = "vitalops_read_only"


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Autocommit at the driver level, so that SQLAlchemy's BEGIN below is the only one.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            read_only = bool(connection.get_execution_options().get(_READ_ONLY))
            # The pooled connection remembers its mode (``info`` lives as long as the driver connection),
            # so the PRAGMA is sent only when a connection changes between reading and writing.
            if connection.info.get(_READ_ONLY) is not read_only:
                connection.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
                connection.info[_READ_ONLY] = read_only
            if read_only:
                # A snapshot read: a deferred BEGIN takes no lock until it reads, and never the write lock.
                connection.exec_driver_sql("BEGIN")
                return
            # A write lock from the start: two processes can never both read the audit chain's
            # head and then both append (SQLite's deferred BEGIN would let them try).
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgresql+psycopg://"):
        import_extra("psycopg")  # the driver is the 'postgres' extra; say so rather than fail inside SQLAlchemy
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine plus a session factory; ``session()`` is one transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        read_options: dict[str, Any] = {_READ_ONLY: True}
        if self.engine.dialect.name == "postgresql":
            read_options["postgresql_readonly"] = True
        self._read_options = read_options
        self._read_sessions = sessionmaker(self.engine.execution_options(**read_options), expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any exception."""
        with self._transaction(self._sessions) as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read-only transaction that never takes the write lock (see the module docstring).

        Use it for reads only: an INSERT, UPDATE or audit append inside it raises ServiceUnavailable.
        """
        with self._transaction(self._read_sessions) as session:
            yield session

    def read_connection(self) -> Connection:
        """A Core connection whose transactions are read-only like ``read_session``'s (use it as a context manager)."""
        connection = self.engine.connect()
        connection.execution_options(**self._read_options)
        return connection

    @contextmanager
    def _transaction(self, factory: sessionmaker[Session]) -> Iterator[Session]:
        session = factory()
        try:
            with session.begin():
                yield session
        except OperationalError as exc:
            raise ServiceUnavailable(
                f"the metadata database at {self.safe_url} could not be used ({type(exc.orig).__name__})"
            ) from exc
        finally:
            session.close()

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, fit for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def ping(self) -> None:
        """Raise ServiceUnavailable unless the database answers."""
        try:
            with self.read_connection() as connection:
                connection.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise ServiceUnavailable(f"the metadata database at {self.safe_url} is unreachable") from exc

    def dispose(self) -> None:
        self.engine.dispose()
