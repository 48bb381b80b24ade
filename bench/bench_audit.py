"""Audit trail: appends per second (SQLite and PostgreSQL), and verifying a 1,000,000-event chain
beside merely reading the same rows.

The 1M-event chain is written by a bulk loader that computes each MAC with the trail's own
``keyed_event_hash`` (HMAC-SHA256 under the installation's audit key; appending them one by one
through ``append`` would take minutes and measure nothing new); appends are measured separately
through the real ``append``.

    python bench/bench_audit.py [--events 1000000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import orjson
import sqlalchemy as sa
from _results import record

from vitalops.audit import append, verify_chain
from vitalops.audit.keys import event_mac_base
from vitalops.audit.trail import GENESIS_HASH, keyed_event_hash
from vitalops.core.clock import isoformat_utc, utcnow
from vitalops.db import Database
from vitalops.db.migrate import upgrade

QUERY = sa.text("SELECT seq, at, actor, action, object_type, object_id, payload_json, prev_hash, hash "
                "FROM audit_events ORDER BY seq")


def appends_per_second(database: Database, total: int, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, total, batch):
        with database.session() as session:
            for index in range(start, min(start + batch, total)):
                append(session, actor="bench", action="model.version.created", object_type="model_version",
                       object_id=f"m/{index}", payload={"index": index, "sha256": "ab" * 32})
    return total / (time.perf_counter() - started)


def chain_rows(count: int, first_seq: int, prev_hash: str):
    at = utcnow()
    at_text = isoformat_utc(at)
    mac_base = event_mac_base()
    for seq in range(first_seq, first_seq + count):
        payload = orjson.dumps({"index": seq}).decode()
        digest = keyed_event_hash(mac_base, seq, at_text, "bench", "x.y", "thing", str(seq), payload, prev_hash)
        yield (seq, at, "bench", "x.y", "thing", str(seq), payload, prev_hash, digest)
        prev_hash = digest


def head(database: Database) -> tuple[int, str]:
    with database.engine.connect() as connection:
        row = connection.execute(sa.text("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")).first()
    return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))


def bulk_load(database: Database, count: int) -> None:
    seq, prev = head(database)
    rows = chain_rows(count, seq + 1, prev)
    if database.dialect == "postgresql":
        raw = database.engine.raw_connection()
        try:
            cursor = raw.cursor()
            with cursor.copy("COPY audit_events (seq, at, actor, action, object_type, object_id, payload_json, "
                             "prev_hash, hash) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
        return
    insert = sa.text("INSERT INTO audit_events (seq, at, actor, action, object_type, object_id, payload_json, "
                     "prev_hash, hash) VALUES (:seq, :at, :actor, :action, :ot, :oid, :p, :ph, :h)")
    chunk: list[dict[str, object]] = []
    with database.engine.begin() as connection:
        for s, at, actor, action, ot, oid, p, ph, h in rows:
            chunk.append({"seq": s, "at": at.replace(tzinfo=None).isoformat(sep=" "), "actor": actor,
                          "action": action, "ot": ot, "oid": oid, "p": p, "ph": ph, "h": h})
            if len(chunk) == 50_000:
                connection.execute(insert, chunk)
                chunk = []
        if chunk:
            connection.execute(insert, chunk)


def bare_read_seconds(database: Database) -> float:
    started = time.perf_counter()
    with database.engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=20_000).execute(QUERY)
        count = sum(len(rows) for rows in result.partitions(20_000))
        result.close()
    assert count > 0
    return time.perf_counter() - started


def run(label: str, database: Database, events: int) -> None:
    upgrade(database)
    rate_batched = appends_per_second(database, 20_000, batch=1_000)
    rate_single = appends_per_second(database, 1_000, batch=1)
    print(f"{label}: appends/s in transactions of 1,000: {rate_batched:,.0f}   one per transaction: "
          f"{rate_single:,.0f}   (target 5,000/s on SQLite in batches)")
    record(f"audit.{label}.appends_per_s_batched", rate_batched, better="higher", unit="appends/s",
           note="audit appends in transactions of 1,000 (no same-run baseline; target 5,000/s on SQLite)")
    bulk_load(database, events - 21_000)
    read = bare_read_seconds(database)
    started = time.perf_counter()
    report = verify_chain(database.engine)
    verify = time.perf_counter() - started
    assert report.ok and report.events == events, report
    print(f"{label}: verify {report.events:,} events: {verify:.2f} s   bare read of the same rows: {read:.2f} s   "
          f"ratio {verify / read:.2f}x (target within 2x; 1M in under 10 s)")
    record(f"audit.{label}.verify_vs_bare_read", verify / read, better="lower", unit="x baseline",
           note=f"verify_chain over {report.events:,} events / a bare streamed read of the same rows")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=os.environ.get("VITALOPS_TEST_DATABASE_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sqlite = Database(f"sqlite:///{folder}/bench.db")
        run("sqlite", sqlite, args.events)
        sqlite.dispose()
    admin = sa.create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://"),
                             isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("DROP DATABASE IF EXISTS vitalops_bench_audit WITH (FORCE)"))
            connection.execute(sa.text("CREATE DATABASE vitalops_bench_audit"))
    except sa.exc.OperationalError:
        print("postgresql: not reachable, skipped")
        return
    url = sa.make_url(args.postgres).set(database="vitalops_bench_audit").render_as_string(hide_password=False)
    postgres = Database(url)
    try:
        run("postgresql", postgres, args.events)
    finally:
        postgres.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text("DROP DATABASE IF EXISTS vitalops_bench_audit WITH (FORCE)"))
        admin.dispose()


if __name__ == "__main__":
    main()
