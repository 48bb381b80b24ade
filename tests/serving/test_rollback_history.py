"""Rollback is one step back and serving sees it at once; history answers which version was live at a
site at a time, through the API and the command line."""

from __future__ import annotations

import time

from tests.conftest import bearer
from tests.serving.test_predict import CLINICIAN, _row
from vitalops.core.clock import utcnow
from vitalops.serving import PredictionRequest, predict


def _served_version(served) -> int:
    request = PredictionRequest(site="north", features=_row(served))
    return predict(served.database, served.context, CLINICIAN, "deterioration", request).prediction.version


def test_rollback_is_one_step_back_and_history_answers_as_of_a_time(served, api_client, make_user, cli,
                                                                     monkeypatch):
    assert _served_version(served) == 1
    time.sleep(0.01)
    between = utcnow()
    time.sleep(0.01)
    served.deploy(2, "champion", "north")
    assert _served_version(served) == 2  # the routing cache sees the new deployment at once
    _, operator_key = make_user("operator", "omar")
    rolled = api_client.post("/v1/deployments/rollback", headers=bearer(operator_key),
                             json={"model": "deterioration", "site": "north", "reason": "calibration alert"})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["action"] == "rollback" and rolled.json()["version"] == 1
    assert _served_version(served) == 1

    past = api_client.get("/v1/deployments/deterioration", headers=bearer(operator_key),
                          params={"site": "north", "at": between.isoformat()}).json()
    assert [(s["slot"], s["version"]) for s in past["state"]] == [("champion", 1)]
    now = api_client.get("/v1/deployments/deterioration", headers=bearer(operator_key), params={"site": "north"})
    assert [e["action"] for e in now.json()["events"]] == ["deploy", "deploy", "rollback"]

    monkeypatch.setenv("VITALOPS_API_KEY", operator_key)
    shown = cli("deployments", "history", "deterioration", "--site", "north", "--at", between.isoformat(), "--json")
    assert shown.exit_code == 0 and shown.json()["state"][0]["version"] == 1
    again = cli("rollback", "deterioration", "--site", "north", "--reason", "back to nothing", "--json")
    assert again.exit_code == 0 and again.json()["version"] is None  # v1 was the first champion at north
    nothing = cli("rollback", "deterioration", "--site", "north", "--reason", "nothing left")
    assert nothing.exit_code == 2 and "no deployment" in nothing.stderr
