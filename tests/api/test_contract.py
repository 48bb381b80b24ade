"""The API contract: bounded parameters, problem+json with request ids everywhere (the unexpected
500 included), a redacted log, the bearer scheme and error shapes in the OpenAPI, an explorer that
needs no network, bounded metrics labels."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import LiveServer, bearer
from vitalops.core.settings import Settings
from vitalops.db import Database

CANARY = "MRN 4455667 Jane Canary 555-867-5309"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/models", {"limit": -1}),
        ("/v1/models", {"limit": 100_000}),
        ("/v1/models", {"offset": 99999999999999999999}),
        ("/v1/models/x/versions/99999999999999999999", {}),
        ("/v1/audit", {"after_seq": 99999999999999999999}),
        ("/v1/audit", {"since": "9999-12-31T23:59:59-23:59"}),
        ("/v1/audit", {"since": "2026-01-01T00:00:00"}),
        ("/v1/audit", {"object_id": "a\x00b"}),
    ],
)
def test_odd_parameters_are_422_problems(api_client: httpx.Client, make_user: Callable, path: str,
                                         params: dict[str, object]) -> None:
    _, key = make_user("auditor")
    response = api_client.get(path, params=params, headers=bearer(key))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_format_errors_list_the_allowed_values(api_client: httpx.Client, make_user: Callable) -> None:
    _, key = make_user("auditor")
    response = api_client.get("/v1/models/x/versions/1/card", params={"format": "xml"}, headers=bearer(key))
    assert response.status_code == 422
    assert response.json()["errors"][0]["allowed"] == "'json', 'md' or 'html'"
    assert "'json', 'md' or 'html'" in response.json()["detail"] and "xml" not in response.text


def test_audit_filters_by_actor(api_client: httpx.Client, make_user: Callable) -> None:
    _, key = make_user("auditor", name="ada")
    make_user("clinician", name="cleo")
    events = api_client.get("/v1/audit", params={"actor": "ada"}, headers=bearer(key)).json()["events"]
    assert events and {event["actor"] for event in events} == {"ada"}


def test_unexpected_errors_carry_the_request_id_and_log_no_text(
    settings: Settings, database: Database, capfd: pytest.CaptureFixture[str]
) -> None:
    server = LiveServer(settings, database)
    app = server.server.config.app

    def explode() -> None:
        raise RuntimeError(CANARY)

    app.add_api_route("/explode", explode)
    with server, httpx.Client(base_url=server.url) as client:
        response = client.get("/explode", headers={"X-Request-ID": "req-12345678"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-12345678"
    assert response.json()["request_id"] == "req-12345678" and response.json()["code"] == "internal_error"
    logged = capfd.readouterr()
    assert "RuntimeError" in logged.err and "req-12345678" in logged.err and '"route":"/explode"' in logged.err
    for fragment in ("4455667", "Canary", "867-5309", "Traceback"):
        assert fragment not in logged.out + logged.err


def test_openapi_declares_bearer_and_problem_responses(api_client: httpx.Client) -> None:
    document = api_client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "an API key, 'vok_...'"}
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "code", "detail", "request_id"} <= set(problem["required"])
    reference = {"$ref": "#/components/schemas/Problem"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path.startswith("/v1/") and path != "/v1/enrollments/redeem":
                assert operation["security"] == [{"bearer": []}], (method, path)
                for status in ("401", "403"):
                    assert responses[status]["content"]["application/problem+json"]["schema"] == reference
            if "{" in path:
                assert "404" in responses, (method, path)
            if method == "post":
                assert {"404", "409", "422"} <= set(responses), (method, path)
            assert "HTTPValidationError" not in str(operation)


def test_docs_work_without_a_network_and_metrics_labels_are_bounded(api_client: httpx.Client) -> None:
    page = api_client.get("/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text and "/docs/assets/swagger-ui.css" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    script = api_client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("application/javascript")
    assert len(script.content) > 100_000
    assert api_client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert api_client.get("/docs/assets/..%2Fsecrets.env").status_code == 404
    assert api_client.get("/v1/no-such/4455667").status_code == 404
    metrics = api_client.get("/metrics").text
    assert 'route="/docs"' in metrics and 'route="/docs/assets/{asset}"' in metrics
    assert 'route="unmatched",status="404"' in metrics
    assert "4455667" not in metrics and "secrets" not in metrics
