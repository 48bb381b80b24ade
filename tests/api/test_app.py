from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.conftest import LiveServer, bearer
from vitalops.audit import list_events
from vitalops.db import Database


def test_health_readiness_and_metrics(api_client: httpx.Client) -> None:
    assert api_client.get("/").json()["docs"] == "/docs"
    assert api_client.get("/healthz").json() == {"status": "ok"}
    ready = api_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    api_client.get("/v1/audit")
    metrics = api_client.get("/metrics").text
    assert 'vitalops_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in metrics
    assert 'route="/v1/audit",status="401"' in metrics
    assert "vitalops_http_request_duration_seconds_bucket" in metrics


def test_request_ids_are_echoed_or_generated(api_client: httpx.Client) -> None:
    echoed = api_client.get("/healthz", headers={"X-Request-ID": "abc-12345678"})
    assert echoed.headers["x-request-id"] == "abc-12345678"
    generated = api_client.get("/healthz", headers={"X-Request-ID": "<script>"})
    assert generated.headers["x-request-id"] != "<script>" and len(generated.headers["x-request-id"]) == 16


def test_unauthenticated_is_401_problem_json_and_audited(api_client: httpx.Client, database: Database,
                                                        live_server: LiveServer) -> None:
    response = api_client.get("/v1/audit")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["code"] == "unauthenticated" and body["request_id"] == response.headers["x-request-id"]
    bad = api_client.get("/v1/audit", headers=bearer("vok_000000000000_" + "x" * 40))
    assert bad.status_code == 401
    live_server.server.config.app.state.denials.flush(database, everything=True)  # as at shutdown
    with database.session() as session:
        failures = list_events(session, action="auth.failed")
    assert {event.payload["reason"] for event in failures} == {"missing_credentials", "unknown_key"}
    assert all(event.payload["count"] == 1 and event.object_id == "/v1/audit" for event in failures)


def test_forbidden_is_403_and_audited(api_client: httpx.Client, make_user: Callable, database: Database) -> None:
    _, key = make_user("clinician", name="casey")
    response = api_client.get("/v1/audit", headers=bearer(key))
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    with database.session() as session:
        denial = list_events(session, action="access.denied")[0]
    assert denial.actor == "casey" and denial.object_id == "/v1/audit"


def test_auditor_reads_events_and_verifies_the_chain(api_client: httpx.Client, make_user: Callable) -> None:
    _, key = make_user("auditor")
    events = api_client.get("/v1/audit", params={"action": "user.created"}, headers=bearer(key)).json()["events"]
    assert len(events) == 1 and events[0]["payload"] == {"role": "auditor", "kind": "person"}
    assert api_client.get("/v1/audit/verify", headers=bearer(key)).json()["ok"] is True


def test_admin_manages_users_with_clear_errors(api_client: httpx.Client, make_user: Callable) -> None:
    _, key = make_user("admin")
    created = api_client.post("/v1/users", json={"name": "dana", "role": "data_scientist"}, headers=bearer(key))
    assert created.status_code == 201 and created.json()["role"] == "data_scientist"
    duplicate = api_client.post("/v1/users", json={"name": "dana", "role": "data_scientist"}, headers=bearer(key))
    assert duplicate.status_code == 409 and "already exists" in duplicate.json()["detail"]
    unknown = api_client.post("/v1/users", json={"name": "erin", "role": "wizard"}, headers=bearer(key))
    assert unknown.status_code == 422 and "unknown role 'wizard'" in unknown.json()["detail"]
    malformed = api_client.post("/v1/users", content=b'{"name": "x", "role":', headers=bearer(key) | {
        "content-type": "application/json"})
    assert malformed.status_code == 422 and malformed.json()["detail"] == "the request body is not valid JSON"
    person_key = api_client.post("/v1/users/dana/keys", json={"days": 7}, headers=bearer(key))
    assert person_key.status_code == 403 and person_key.json()["code"] == "policy_violation"
    assert "enrollment" in person_key.json()["detail"]
    service = api_client.post("/v1/users", json={"name": "lab-feed", "role": "operator", "service": True},
                              headers=bearer(key))
    assert service.status_code == 201 and service.json()["kind"] == "service"
    issued = api_client.post("/v1/users/lab-feed/keys", json={"days": 7}, headers=bearer(key)).json()
    assert issued["key"].startswith("vok_") and issued["personal"] is False
    assert api_client.get("/v1/audit", headers=bearer(issued["key"])).status_code == 403
    revoked = api_client.post(f"/v1/users/lab-feed/keys/{issued['prefix']}/revoke", json={"reason": "test"},
                              headers=bearer(key))
    assert revoked.status_code == 200
    assert api_client.get("/v1/audit", headers=bearer(issued["key"])).status_code == 401


def test_unknown_route_is_problem_json(api_client: httpx.Client) -> None:
    response = api_client.get("/v1/nothing-here")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
