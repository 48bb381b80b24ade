"""The serving step of ``vitalops demo``: a shadow and a canary beside the champion, then a replayed day
of the synthetic hospital scored through the REST API (the real app on a loopback port), every
prediction logged with its reasons.

At north the weakened v3 (refused beyond shadow) runs as a shadow: scored for every patient after
the response, logged, never returned. At south v2, approved by two approvers and through its gate
(their full reviews waive the subgroups too small to judge), takes 20% of patients as a canary,
chosen by the patient's pseudonymous key. The replayed day is the busiest day of scoring times at
those sites in the deterioration training set, sent as feature vectors with their patient keys.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import uvicorn

from vitalops.auth import Principal
from vitalops.core.settings import Settings
from vitalops.db import Database
from vitalops.errors import Conflict, GateFailed, PolicyViolation, ServiceUnavailable
from vitalops.features.training_set import read_training_set
from vitalops.governance.approvals import approve_version
from vitalops.governance.deploy import deploy_version
from vitalops.governance.gate import record_full_review, run_pccp_check
from vitalops.registry.versions import get_version, get_version_report
from vitalops.training.demo import approval_reason
from vitalops.validation.report import ValidationReport

MODEL = "deterioration"
SHADOW_SITE, CANARY_SITE = "north", "south"


def _approve_and_gate(database: Database, approvers: list[Principal], number: int) -> dict[str, Any]:
    """Two approvals of ``number`` and its gate for all sites, opened by full reviews when the check is
    incomplete only; returns what happened."""
    with database.session() as session:
        version = get_version(session, MODEL, number)
        report = ValidationReport.model_validate(get_version_report(session, MODEL, number))
    if version.state == "validated":
        reason = approval_reason(report, version.report_hash, purpose="a 20% canary at one site")
        for approver in approvers[:2]:
            approve_version(database, approver, MODEL, number, reason=reason)
    check = run_pccp_check(database, approvers[0], MODEL, number)
    waived: list[str] = []
    if check.status == "incomplete":
        waived = [c.name for c in check.not_evaluable]
        for approver in approvers[:2]:
            record_full_review(database, approver, MODEL, number, waives=waived,
                               reason="groups too small in the frozen test set to judge; watched per subgroup "
                               "during the canary")
    return {"version": number, "check": check.status, "waived": waived}


def _replay_rows(dataset_uri: str) -> pa.Table:
    """The scoring times of the busiest day (UTC) at the two sites, in time order."""
    table = read_training_set(dataset_uri).table
    table = table.filter(pc.is_in(table.column("site"), value_set=pa.array([SHADOW_SITE, CANARY_SITE])))
    times = table.column("index_time").cast(pa.timestamp("us", tz="UTC"))
    days = pc.floor_temporal(times, unit="day")
    counts = pa.table({"day": days}).group_by("day").aggregate([("day", "count")]).sort_by(
        [("day_count", "descending"), ("day", "ascending")])
    busiest = counts.column("day")[0]
    day = table.filter(pc.equal(days, busiest))
    return day.sort_by([("index_time", "ascending"), ("patient_key", "ascending")])


@contextmanager
def _loopback_server(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port in a thread, for as long as the block runs."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise ServiceUnavailable("the demo could not start its API on a loopback port")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_serving_demo(
    database: Database,
    settings: Settings,
    *,
    data_scientist: Principal,
    approvers: list[Principal],
    clinician_key: str,
    dataset_uri: str,
    app: Any,
    then: Callable[[str, list[dict[str, Any]]], Any] | None = None,
) -> dict[str, Any]:
    """Deploy the shadow and the canary, replay a day through ``app``'s REST API; a summary of it.
    ``then`` runs on the same loopback server after the replay, with its base URL and the served
    predictions; what it returns is the summary's ``then``."""
    summary: dict[str, Any] = {"canary": _approve_and_gate(database, approvers, 2)}
    try:
        deploy_version(database, approvers[0], MODEL, 2, sites=[CANARY_SITE], mode="canary:20",
                       reason="20% canary after two approvals and its gate")
        summary["canary"]["deployed"] = f"canary:20 at {CANARY_SITE}"
    except (GateFailed, Conflict, PolicyViolation) as refused:
        summary["canary"]["deployed"] = f"refused: {refused.message}"
    deploy_version(database, data_scientist, MODEL, 3, sites=[SHADOW_SITE], mode="shadow",
                   reason="shadow evaluation of the outage-trained candidate")
    summary["shadow"] = {"version": 3, "site": SHADOW_SITE}
    rows = _replay_rows(dataset_uri)
    with database.session() as session:
        features = get_version(session, MODEL, 1).signature.feature_names
    columns = {name: rows.column(name).to_pylist() for name in ["patient_key", "site", "index_time", *features]}
    served: list[dict[str, Any]] = []
    access_log = logging.getLogger("vitalops.api.access")
    level = access_log.level
    access_log.setLevel(logging.WARNING)  # a line per request would bury the demo's output
    with _loopback_server(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        for i in range(rows.num_rows):
            body = {"site": columns["site"][i], "patient_key": columns["patient_key"][i],
                    "at": columns["index_time"][i].isoformat(), "features": {n: columns[n][i] for n in features}}
            response = client.post(f"/v1/models/{MODEL}/predict", json=body,
                                   headers={"Authorization": f"Bearer {clinician_key}"})
            response.raise_for_status()
            served.append(response.json())
        if then is not None:
            summary["then"] = then(base_url, served)
        app.state.serving.shadows.join()  # every shadow scored and logged before the demo reports
    access_log.setLevel(level)
    counts = Counter((p["site"], p["version"], p["mode"]) for p in served)
    summary["replayed"] = len(served)
    summary["served"] = [
        {"site": s, "version": v, "mode": m, "predictions": n} for (s, v, m), n in sorted(counts.items())
    ]
    summary["flagged"] = sum(p["decision"] for p in served)
    summary["examples"] = [
        {"id": p["id"], "site": p["site"], "version": p["version"], "risk": p["score"], "band": p["band"],
         "factors": p["explanation"]["factors"][:3], "counterfactuals": p["explanation"]["counterfactuals"][:2]}
        for p in sorted(served, key=lambda p: -p["score"])[:3]
    ]
    return summary
