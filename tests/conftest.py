"""Fixtures shared by every suite.

``database`` is a fresh, migrated database per test, parametrized over SQLite and, when
``VITALOPS_TEST_DATABASE_URL`` is set, PostgreSQL: each PostgreSQL test gets its own database
cloned from a migrated template. Tests run at a non-UTC local time zone so that any code that
silently uses local time fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

os.environ["TZ"] = "America/Chicago"
time.tzset()

from vitalops.api.app import create_app  # noqa: E402
from vitalops.auth import SYSTEM, Principal  # noqa: E402
from vitalops.auth.users import (  # noqa: E402
    authenticate_key,
    create_enrollment,
    create_key,
    create_user,
    redeem_enrollment,  # noqa: E402
)
from vitalops.core.settings import Settings, get_settings, write_secrets_file  # noqa: E402
from vitalops.db import Database  # noqa: E402
from vitalops.db.migrate import upgrade  # noqa: E402

PG_URL = os.environ.get("VITALOPS_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


def _pg_admin_engine() -> sa.Engine:
    assert PG_URL is not None
    url = sa.make_url(PG_URL).set(drivername="postgresql+psycopg")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT")


def pg_url_for(database_name: str) -> str:
    assert PG_URL is not None
    url = sa.make_url(PG_URL).set(drivername="postgresql+psycopg", database=database_name)
    return url.render_as_string(hide_password=False)


def create_pg_database(template: str | None = None) -> str:
    """Create an empty (or templated) PostgreSQL database and return its URL."""
    name = f"vt_{secrets.token_hex(6)}"
    engine = _pg_admin_engine()
    with engine.connect() as connection:
        suffix = f" TEMPLATE {template}" if template else ""
        connection.execute(sa.text(f"CREATE DATABASE {name}{suffix}"))
    engine.dispose()
    return pg_url_for(name)


def drop_pg_database(url: str) -> None:
    name = sa.make_url(url).database
    engine = _pg_admin_engine()
    with engine.connect() as connection:
        connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    engine.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    return path


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str | None]:
    if not PG_URL:
        yield None
        return
    url = create_pg_database()
    database = Database(url)
    upgrade(database)
    database.dispose()
    name = sa.make_url(url).database
    assert name is not None
    yield name
    drop_pg_database(url)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh migrated database, on each configured backend."""
    if request.param == "sqlite":
        path = tmp_path / "vitalops.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        db = Database(f"sqlite:///{path}")
        yield db
        db.dispose()
        return
    template = request.getfixturevalue("_pg_template")
    url = create_pg_database(template)
    db = Database(url)
    yield db
    db.dispose()
    drop_pg_database(url)


@pytest.fixture
def home(tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A VitalOps home folder with generated secrets, pointing at ``database``; settings cache cleared."""
    home_dir = tmp_path / "home"
    (home_dir / "lake").mkdir(parents=True)
    (home_dir / "artifacts").mkdir()
    write_secrets_file(home_dir)
    monkeypatch.setenv("VITALOPS_HOME", str(home_dir))
    monkeypatch.setenv("VITALOPS_DATABASE_URL", database.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("VITALOPS_ENVIRONMENT", "test")
    monkeypatch.setenv("VITALOPS_LOG_JSON", "true")
    monkeypatch.delenv("VITALOPS_USER", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def settings(home: Settings) -> Settings:
    return home


@pytest.fixture
def make_user(database: Database) -> Callable[..., tuple[Principal, str]]:
    """Create a user with ``role`` and their API key through the public services: a person enrolls and
    redeems the token for a key of their own; a service account (ehr) gets a key from an admin. The
    principal returned is the one the key authenticates as."""

    def make(role: str, name: str | None = None, days: int = 30) -> tuple[Principal, str]:
        user_name = name or f"{role.replace('_', '')}{secrets.token_hex(3)}"
        with database.session() as session:
            user = create_user(session, SYSTEM, user_name, role)
            if user.kind == "service":
                _, plain = create_key(session, SYSTEM, user_name, days=days)
            else:
                _, token = create_enrollment(session, SYSTEM, user_name)
                _, plain = redeem_enrollment(session, token, days=days)
        with database.session() as session:
            return authenticate_key(session, plain), plain

    return make


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """A real uvicorn server on loopback, in a thread."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.port = _free_port()
        config = uvicorn.Config(create_app(settings, database), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(settings: Settings, database: Database) -> Iterator[LiveServer]:
    with LiveServer(settings, database) as server:
        yield server


@pytest.fixture
def api_client(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client against the live server (no credentials; add ``headers=`` per request)."""
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class CliResult:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    def json(self) -> object:
        import orjson

        return orjson.loads(self.stdout)


@pytest.fixture
def cli(
    home: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Run ``vitalops ARGS...`` in-process through the real entry point; returns exit code and output."""
    from vitalops.cli.main import run

    def invoke(*args: str, user: str | None = None) -> CliResult:
        capsys.readouterr()
        if user is None:
            monkeypatch.delenv("VITALOPS_USER", raising=False)
        else:
            monkeypatch.setenv("VITALOPS_USER", user)
        get_settings.cache_clear()
        monkeypatch.setattr("sys.argv", ["vitalops", *args])
        code = 0
        try:
            run()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke
