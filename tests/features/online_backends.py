"""The online-store backends a test runs over: SQLite in the test's folder and Redis under a key
prefix of its own (removed afterwards). Redis is at ``VITALOPS_TEST_REDIS_URL`` (default
127.0.0.1:6379/0); when that variable is set (as in ``.ci/run``) an unreachable Redis fails the
suite, otherwise its cases are skipped."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from vitalops.features.online_store import OnlineStore, open_online_store

BACKENDS = ("sqlite", "redis")
REDIS_URL = os.environ.get("VITALOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _require_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError:
        if "VITALOPS_TEST_REDIS_URL" in os.environ:
            raise
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")


def store_url(backend: str, folder: Path) -> str:
    """A new, empty store's URL on ``backend``."""
    if backend == "sqlite":
        return f"sqlite:///{folder / f'online-{secrets.token_hex(4)}.db'}"
    _require_redis()
    return f"{REDIS_URL}?prefix=vitalops-test:{secrets.token_hex(6)}:"


def open_store(backend: str, folder: Path) -> Iterator[OnlineStore]:
    """A new store on ``backend``; cleared and closed when the generator closes."""
    store = open_online_store(store_url(backend, folder))
    try:
        yield store
    finally:
        store.clear()
        store.close()
