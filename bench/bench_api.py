"""``GET /v1/models`` at concurrency 16 on SQLite, beside a constant-response FastAPI endpoint.

Three servers, each one uvicorn worker in its own process, driven in turn by the same client (an
asyncio httpx client with 16 requests in flight, a fixed number of requests after a warm-up):

- ``constant``: a FastAPI app whose one route returns a constant JSON object (the baseline);
- ``models``: the VitalOps API, with reads in read sessions (a deferred BEGIN: no write lock);
- ``models_write_lock``: the same API with every read session replaced by a write session
  (``BEGIN IMMEDIATE``), which is how every read ran before read sessions existed: the "before".

The home has 20 registered models; the caller is an auditor with a valid key (each request
authenticates, is authorized, and lists the models with their versions and champions).

    python bench/bench_api.py [--requests 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import _load
from _load import constant_app
from _results import record

MODELS = 20


def vitalops_app(write_lock_reads: bool) -> Any:
    from vitalops.api.app import create_app
    from vitalops.db import Database

    if write_lock_reads:
        Database.read_session = Database.session  # type: ignore[method-assign]
    return create_app()


def serve(kind: str, port: int) -> None:
    import uvicorn

    app = constant_app() if kind == "constant" else vitalops_app(kind == "models_write_lock")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def seed_home(home: Path) -> str:
    """A home with ``MODELS`` models and an auditor's key; returns the key."""
    from vitalops.auth import SYSTEM, Principal, Role
    from vitalops.auth.users import create_enrollment, create_user, redeem_enrollment
    from vitalops.core.settings import get_settings, write_secrets_file
    from vitalops.db import Database
    from vitalops.db.migrate import upgrade
    from vitalops.registry.schemas import ModelCreate
    from vitalops.registry.versions import create_model

    write_secrets_file(home)
    get_settings.cache_clear()
    database = Database(get_settings().db_url)
    upgrade(database)
    scientist = Principal(name="dana", roles=frozenset({Role.DATA_SCIENTIST}))
    with database.session() as session:
        for index in range(MODELS):
            create_model(session, scientist, ModelCreate(name=f"model-{index:02d}", intended_use="early warning",
                                                         clinical_owner="ward", target_population="adults"))
        create_user(session, SYSTEM, "audrey", "auditor")
        _, token = create_enrollment(session, SYSTEM, "audrey")
        _, key = redeem_enrollment(session, token)
    database.dispose()
    return key


def measure(kind: str, path: str, headers: dict[str, str], args: argparse.Namespace) -> dict[str, float]:
    return _load.measure(__file__, kind, path, headers, total=args.requests, concurrency=args.concurrency)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        os.environ.update({"VITALOPS_HOME": str(home), "VITALOPS_ENVIRONMENT": "test", "VITALOPS_LOG_LEVEL": "WARNING"})
        os.environ.pop("VITALOPS_DATABASE_URL", None)
        key = seed_home(home)
        auth = {"Authorization": f"Bearer {key}"}
        print(f"GET /v1/models ({MODELS} models) on SQLite, {args.requests:,} requests at concurrency "
              f"{args.concurrency}, one worker each:")
        constant = measure("constant", "/constant", {}, args)
        before = measure("models_write_lock", "/v1/models", auth, args)
        after = measure("models", "/v1/models", auth, args)
    print(f"  read sessions: {after['rate'] / before['rate']:.2f}x the requests/s of write-locked reads, "
          f"p99 {before['p99_ms']:.1f} -> {after['p99_ms']:.1f} ms; {after['rate'] / constant['rate']:.0%} of the "
          "constant endpoint")
    note = f"GET /v1/models, {MODELS} models, SQLite, concurrency {args.concurrency}, one uvicorn worker"
    record("api.models_c16_vs_constant", after["rate"] / constant["rate"], better="higher", unit="x baseline",
           note=note + "; requests/s relative to a constant-response FastAPI endpoint in the same run")
    record("api.models_c16_p99_ms", after["p99_ms"], better="lower", unit="ms", note=note + "; p99 latency")
    record("api.models_c16_read_vs_write_lock", after["rate"] / before["rate"], better="higher", unit="x baseline",
           note=note + "; read sessions relative to the same reads under BEGIN IMMEDIATE (before), same run")


if __name__ == "__main__":
    main()
