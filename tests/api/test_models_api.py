from __future__ import annotations

import httpx
import pytest

from tests.conftest import bearer
from tests.governance.plans import register_sites
from tests.governance.test_pccp_gate import _register, _table, create_deterioration_model
from vitalops.artifacts import open_store


@pytest.fixture
def client(api_client: httpx.Client) -> httpx.Client:
    return api_client


def test_models_api_permissions_approvals_and_gate(client, database, settings, make_user):
    _, scientist_key = make_user("data_scientist", "dana")
    _, approver_key = make_user("approver", "alice")
    create_deterioration_model(database)
    register_sites(database, "a")
    _register(database, open_store(settings.artifacts_root), _table(1), ["heart_rate", "lactate"], 1)

    assert client.get("/v1/models").status_code == 401
    listed = client.get("/v1/models", headers=bearer(scientist_key))
    assert listed.status_code == 200 and listed.json()["models"][0]["latest_state"] == "validated"

    approval = {"decision": "approve", "reason": "report reviewed"}
    denied = client.post("/v1/models/deterioration/versions/1/approvals", json=approval, headers=bearer(scientist_key))
    assert denied.status_code == 403
    approved = client.post("/v1/models/deterioration/versions/1/approvals", json=approval, headers=bearer(approver_key))
    assert approved.status_code == 201 and approved.json()["state"] == "approved"
    _register(database, open_store(settings.artifacts_root), _table(2), ["heart_rate", "lactate"], 2)
    listed = client.get("/v1/models", headers=bearer(scientist_key)).json()["models"][0]
    assert (listed["versions"], listed["latest"], listed["latest_state"]) == (2, 2, "validated")

    blocked = client.post(
        "/v1/deployments",
        headers=bearer(approver_key),
        json={"model": "deterioration", "version": 1, "sites": ["a"], "mode": "champion"},
    )
    assert blocked.status_code == 409
    assert "pccp.plan_missing" in blocked.text
    shadow = client.post(
        "/v1/deployments",
        headers=bearer(scientist_key),
        json={"model": "deterioration", "version": 1, "sites": ["a"], "mode": "shadow"},
    )
    assert shadow.status_code == 200 and shadow.json()["applied"] is True
    history = client.get("/v1/deployments/deterioration", headers=bearer(scientist_key)).json()
    assert history["state"][0]["mode"] == "shadow"
    detail = client.get("/v1/models/deterioration/versions/1", headers=bearer(scientist_key)).json()
    assert detail["approvals"][0]["approver"] == "alice" and detail["version"]["submitter"] == "dana"

    card = client.get("/v1/models/deterioration/versions/1/card", headers=bearer(scientist_key))
    assert card.status_code == 200
    sections = card.json()
    assert "basic_information" in str(sections) and "alice" in card.text
    markdown = client.get("/v1/models/deterioration/versions/1/card", params={"format": "md"},
                          headers=bearer(scientist_key))
    assert markdown.headers["content-type"].startswith("text/markdown") and "Key metrics" in markdown.text
    html = client.get("/v1/models/deterioration/versions/1/card", params={"format": "html"},
                      headers=bearer(scientist_key))
    assert html.headers["content-type"].startswith("text/html") and "<html" in html.text.lower()
    report = client.get("/v1/models/deterioration/versions/1/report", params={"format": "html"},
                        headers=bearer(scientist_key))
    assert report.status_code == 200 and "Validation report: deterioration v1" in report.text
    assert "<svg" in report.text  # calibration and decision curves inline, no network
    stored = client.get("/v1/models/deterioration/versions/1/report", headers=bearer(scientist_key)).json()
    assert stored["threshold"] == 0.4
