"""The online store's backends: a SQLite file (embedded default) and Redis (production).

Both keep one row per ``(patient_key, fact_id)``, so an upsert is a plain overwrite and
concurrent ingests need no read-modify-write of a shared value: a fact written twice is written
once, and a fact is only ever removed when it lies outside its patient's horizon, which only moves
forward as facts arrive (``vitalops.features.online_store``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from vitalops.core.extras import import_extra
from vitalops.features.online_store import OnlineStore, Rows

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS online_facts (patient_key TEXT NOT NULL, fact_id TEXT NOT NULL, "
    "row BLOB NOT NULL, PRIMARY KEY (patient_key, fact_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS online_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_KEYS_PER_QUERY = 500  # well under SQLite's bound-parameter limit
_CACHE_KIB = 64 * 1024  # per connection
#: An upsert that leaves a row already holding the same bytes untouched (a rerun writes nothing).
_UPSERT = (
    "INSERT INTO online_facts (patient_key, fact_id, row) VALUES (?, ?, ?) "
    "ON CONFLICT (patient_key, fact_id) DO UPDATE SET row = excluded.row WHERE row IS NOT excluded.row"
)


class SQLiteOnlineStore(OnlineStore):
    """The store in a local SQLite file (WAL: readers never wait for a writer). One connection per
    thread; each ``apply`` is one transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._connection() as connection:
            for statement in _SCHEMA:
                connection.execute(statement)

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            # a chunk's upserts touch pages all over the key space: a page cache that holds them
            # saves spilling dirty pages to the WAL mid-transaction and reading them back
            connection.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def rows(self, patient_keys: Sequence[str]) -> dict[str, Rows]:
        found: dict[str, Rows] = {}
        connection = self._connection()
        for start in range(0, len(patient_keys), _KEYS_PER_QUERY):
            keys = list(patient_keys[start:start + _KEYS_PER_QUERY])
            marks = ",".join("?" * len(keys))
            cursor = connection.execute(
                f"SELECT patient_key, fact_id, row FROM online_facts WHERE patient_key IN ({marks})",  # noqa: S608
                keys,
            )
            for key, fact_id, row in cursor:
                found.setdefault(key, {})[fact_id] = row
        return found

    def apply(self, upserts: Mapping[str, Rows], deletes: Mapping[str, Sequence[str]]) -> None:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            # in key order: each page of the primary key's tree is visited once, not once per row
            connection.executemany(
                _UPSERT,
                sorted((key, fact_id, row) for key, rows in upserts.items() for fact_id, row in rows.items()),
            )
            connection.executemany(
                "DELETE FROM online_facts WHERE patient_key = ? AND fact_id = ?",
                ((key, fact_id) for key, ids in deletes.items() for fact_id in ids),
            )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def get_meta(self, name: str) -> Any:
        row = self._connection().execute("SELECT value FROM online_meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, name: str, value: Any) -> None:
        self._connection().execute("INSERT OR REPLACE INTO online_meta (name, value) VALUES (?, ?)", (name, value))

    def clear(self) -> None:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("DELETE FROM online_facts")
        connection.execute("DELETE FROM online_meta")
        connection.execute("COMMIT")

    def patients(self) -> int:
        row = self._connection().execute("SELECT count(DISTINCT patient_key) FROM online_facts").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()


#: Key prefix of an installation's online store in Redis (``?prefix=`` in the URL overrides it).
DEFAULT_PREFIX = "vitalops:online:"


class RedisOnlineStore(OnlineStore):
    """The store in Redis: a hash per patient (``<prefix>p:<patient_key>``, field = fact id, value =
    the row) and a hash of meta values (``<prefix>meta``). Each ``apply`` is one MULTI/EXEC."""

    def __init__(self, url: str, *, prefix: str | None = None) -> None:
        redis = import_extra("redis")
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.prefix = prefix or (query.pop("prefix", [DEFAULT_PREFIX])[0])
        url = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        self._client = redis.Redis.from_url(url)
        self._meta = f"{self.prefix}meta"

    def _key(self, patient_key: str) -> str:
        return f"{self.prefix}p:{patient_key}"

    def rows(self, patient_keys: Sequence[str]) -> dict[str, Rows]:
        if len(patient_keys) == 1:  # the serving path: one round trip, no pipeline
            answers = [self._client.hgetall(self._key(patient_keys[0]))]
        else:
            pipe = self._client.pipeline(transaction=False)
            for key in patient_keys:
                pipe.hgetall(self._key(key))
            answers = pipe.execute()
        return {
            key: {field.decode(): value for field, value in answer.items()}
            for key, answer in zip(patient_keys, answers, strict=True)
            if answer
        }

    def apply(self, upserts: Mapping[str, Rows], deletes: Mapping[str, Sequence[str]]) -> None:
        pipe = self._client.pipeline(transaction=True)
        for key, rows in upserts.items():
            if rows:
                pipe.hset(self._key(key), mapping=rows)
        for key, ids in deletes.items():
            if ids:
                pipe.hdel(self._key(key), *ids)
        pipe.execute()

    def get_meta(self, name: str) -> Any:
        value = self._client.hget(self._meta, name)
        return None if value is None else value.decode()

    def set_meta(self, name: str, value: Any) -> None:
        self._client.hset(self._meta, name, value)

    def _patient_keys(self) -> list[bytes]:
        return list(self._client.scan_iter(match=f"{self.prefix}p:*", count=1000))

    def clear(self) -> None:
        keys = self._patient_keys()
        for start in range(0, len(keys), 1000):
            self._client.unlink(*keys[start:start + 1000])
        self._client.delete(self._meta)

    def patients(self) -> int:
        return len(self._patient_keys())

    def close(self) -> None:
        self._client.close()
