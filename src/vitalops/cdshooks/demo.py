"""The CDS Hooks step of ``vitalops demo``: the demo EHR trusted as a CDS client, and part of a day of
the synthetic hospital replayed through CDS Hooks as that EHR would have called.

The demo EHR is the site ``north``'s (issuer ``DEMO_ISSUER``, account ``ehr-north``); its
credentials are written to ``$VITALOPS_HOME/demo/ehr-client.json`` (0600) so that anyone can call
the services as it (``vitalops cds call``). The replay takes the north patients the REST replay
scored on the busiest day, those nearest the threshold first (so a few land in the review queue),
then the rest in time order, up to REPLAY_CALLS. For each, the EHR sends what it knew at the
scoring time with its times moved to now (``ehr.replay_at``), prefetched per the service's
templates, and records the clinician's answer on the card: two in three accepted, one in three
overridden with one of the card's override reasons in turn.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vitalops.auth import Principal
from vitalops.cdshooks.clients import add_client, get_client
from vitalops.cdshooks.ehr import (
    DEMO_CLIENT_FILE,
    CdsClient,
    EhrCredentials,
    build_prefetch,
    hook_request,
    outcome_time,
    patient_resources,
    replay_at,
)
from vitalops.db import Database
from vitalops.errors import Conflict, NotFound
from vitalops.review import queue_stats

DEMO_ISSUER = "urn:vitalops:demo:ehr-north"
DEMO_KID = "ehr-north-1"
DEMO_SITE = "north"
DEMO_ACCOUNT = "ehr-north"
DEMO_USER_ID = "Practitioner/demo-north"
#: Calls the replay makes, and how many of them are the predictions nearest the threshold.
REPLAY_CALLS = 12
NEAR_THRESHOLD_CALLS = 3


def ensure_demo_ehr(database: Database, actor: Principal, home: Path) -> dict[str, Any]:
    """Trust the demo EHR (kept when it is trusted already and its client file is there) and write its
    client file; Conflict when it is trusted but the file with its private key is gone."""
    path = home / DEMO_CLIENT_FILE
    with database.session() as session:
        try:
            client, _ = get_client(session, DEMO_ISSUER)
        except NotFound:
            client = None
        if client is None:
            credentials = EhrCredentials.generate(DEMO_ISSUER, DEMO_KID, site=DEMO_SITE)
            add_client(session, actor, DEMO_ISSUER, site=DEMO_SITE, jwks=credentials.public_jwks(),
                       account=DEMO_ACCOUNT)
            credentials.write(path)
            return {"issuer": DEMO_ISSUER, "kid": DEMO_KID, "site": DEMO_SITE, "client_file": str(path),
                    "registered": True}
    known = [] if client.jwks is None else [key.get("kid") for key in client.jwks.get("keys", [])]
    if client.revoked or not path.exists() or EhrCredentials.read(path).kid not in known:
        raise Conflict(f"the demo EHR is trusted here but {path} does not hold its key (or it was revoked); "
                       "rebuild the demo with 'vitalops demo --reset'")
    return {"issuer": DEMO_ISSUER, "kid": DEMO_KID, "site": DEMO_SITE, "client_file": str(path),
            "registered": False}


def _choose(served: list[dict[str, Any]], patient_ids: dict[str, str], margin: float) -> list[dict[str, Any]]:
    """The north scoring times of the replayed day (each a chart opened, so a patient may come more
    than once): those nearest the threshold first, then the rest in time order."""
    ordered = sorted((p for p in served if p["site"] == DEMO_SITE and p.get("patient_key") in patient_ids
                      and p["mode"] != "shadow"), key=lambda p: p["at"])
    near = sorted((p for p in ordered if abs(p["score"] - p["threshold"]) <= margin),
                  key=lambda p: abs(p["score"] - p["threshold"]))[:NEAR_THRESHOLD_CALLS]
    rest = [p for p in ordered if p not in near]
    return (near + rest)[:REPLAY_CALLS]


def _feedback(card: dict[str, Any], index: int, when: str) -> dict[str, Any]:
    if index % 3 == 2 and card.get("overrideReasons"):
        reasons = card["overrideReasons"]
        return {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": when,
                "overrideReason": {"reason": reasons[(index // 3) % len(reasons)],
                                   "userComment": "Reviewed at the bedside during the demo replay"}}
    accepted = [{"id": s["uuid"]} for s in card.get("suggestions") or [] if s.get("isRecommended")]
    return {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": when, "acceptedSuggestions": accepted}


def run_cds_replay(database: Database, base_url: str, home: Path, *, service: str, served: list[dict[str, Any]],
                   patient_key: Callable[[str], str], margin: float) -> dict[str, Any]:
    """Replay ``served``'s north patients through CDS Hooks at ``base_url`` as the demo EHR, with
    feedback on every card; a summary (cards by indicator, feedback, review queue)."""
    started = time.perf_counter()
    credentials = EhrCredentials.read(home / DEMO_CLIENT_FILE)
    folder = home / "hospital"
    ids = _patient_ids(folder / "Patient.ndjson")
    by_key = {patient_key(patient_id): patient_id for patient_id in ids}
    chosen = _choose(served, by_key, margin)
    resources = patient_resources(folder, {by_key[p["patient_key"]] for p in chosen})
    indicators: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    calls = held = 0
    with CdsClient(base_url, credentials) as cds:
        templates = cds.service(service).get("prefetch") or {}
        for prediction in chosen:
            patient_id = by_key[prediction["patient_key"]]
            now = datetime.now(UTC)
            moment = datetime.fromisoformat(prediction["at"].replace("Z", "+00:00"))
            known = replay_at(resources[patient_id], moment, now)
            context = {"patientId": patient_id, "userId": DEMO_USER_ID}
            cards = cds.call(service, hook_request(patient_id, DEMO_USER_ID, build_prefetch(templates, known,
                                                                                             context)))["cards"]
            calls += 1
            held += not cards
            for card in cards:
                indicators[card["indicator"]] += 1
                item = _feedback(card, sum(outcomes.values()), outcome_time())
                cds.feedback(service, [item])
                outcomes[item["outcome"]] += 1
    with database.read_session() as session:
        queued, _ = queue_stats(session)
    return {"issuer": credentials.issuer, "site": DEMO_SITE, "calls": calls, "no_card": held,
            "cards": dict(sorted(indicators.items())), "feedback": {"accepted": outcomes["accepted"],
                                                                     "overridden": outcomes["overridden"]},
            "review_queue": queued, "seconds": round(time.perf_counter() - started, 2)}


def _patient_ids(path: Path) -> list[str]:
    import orjson

    ids = []
    with path.open("rb") as lines:
        for line in lines:
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # the demo feed plants bad lines; ingest quarantined them
            if isinstance(resource, dict) and isinstance(resource.get("id"), str):
                ids.append(resource["id"])
    return ids
