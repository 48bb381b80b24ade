"""CDS Hooks JWT verification alone: ES384 tokens of a trusted EHR verified by ``cdshooks.trust.Verifier``
(issuer lookup cached, signature, claims, jti remembered in memory and in SQLite), beside decoding the
same token's payload without any check, in the same run.

    python bench/bench_cdshooks.py [--tokens 2000]

The service call at concurrency 16 beside a constant endpoint is not measured here yet.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jwt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cdshooks.spec_client import EhrKeys  # noqa: E402

from vitalops.auth import SYSTEM  # noqa: E402
from vitalops.cdshooks import Verifier, add_client, record_jti  # noqa: E402
from vitalops.db import Database  # noqa: E402
from vitalops.db.migrate import upgrade  # noqa: E402
from vitalops.sites import create_site  # noqa: E402

AUD = "https://cds.example.org/cds-services/deterioration"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        database = Database(f"sqlite:///{Path(folder) / 'bench.db'}")
        upgrade(database)
        ehr = EhrKeys()
        with database.session() as session:
            create_site(session, SYSTEM, "north")
            add_client(session, SYSTEM, ehr.issuer, site="north", jwks=ehr.jwks)
        verifier = Verifier(database)
        tokens = [ehr.token(AUD) for _ in range(args.tokens)]

        def in_memory(issuer: str, jti: str, expires_at: object) -> bool:
            return True

        def in_database(issuer: str, jti: str, expires_at: object) -> bool:
            with database.session() as session:
                return record_jti(session, issuer, jti, expires_at, purge=False)  # type: ignore[arg-type]

        verifier.verify(ehr.token(AUD), AUD, in_memory)  # warm the issuer cache
        figures = {}
        for label, recorder, batch in (("verify (jti in memory)", in_memory, tokens[: args.tokens // 2]),
                                       ("verify + jti row in SQLite", in_database, tokens[args.tokens // 2:])):
            times = []
            for token in batch:
                started = time.perf_counter()
                verifier.verify(token, AUD, recorder)
                times.append((time.perf_counter() - started) * 1000)
            figures[label] = times
        baseline = []
        for token in tokens[:500]:
            started = time.perf_counter()
            jwt.decode(token, options={"verify_signature": False})
            baseline.append((time.perf_counter() - started) * 1000)
        figures["decode only, no checks (baseline)"] = baseline
        for label, times in figures.items():
            ordered = sorted(times)
            print(f"{label:38s} median {statistics.median(times):.3f} ms  "  # noqa: T201
                  f"p99 {ordered[int(len(ordered) * 0.99) - 1]:.3f} ms  ({len(times)} tokens)")
        database.dispose()


if __name__ == "__main__":
    main()
