"""RiskAssessments POSTed to the EHR's FHIR server: a FHIR double on loopback that validates what it
is sent (R4B), answers 201 with a Location, and fails transiently first; the outcome audited."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.riskassessment import RiskAssessment

from tests.conftest import bearer
from tests.features.test_online import _subject
from vitalops.audit import list_events
from vitalops.errors import InvalidInput, ServiceUnavailable
from vitalops.fhir.publish import RiskAssessmentPublisher


class FhirServer:
    """Accepts ``POST /fhir/RiskAssessment`` as a FHIR server would: 201 and a Location for a valid
    R4B RiskAssessment sent as ``application/fhir+json``, 400 with an OperationOutcome otherwise;
    the first ``fail_first`` creates answer 503 with ``Retry-After: 0``."""

    def __init__(self, *, fail_first: int = 0, refuse: bool = False) -> None:
        self.created: list[dict[str, Any]] = []
        self.attempts = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                        ) -> None:
                content = orjson.dumps(body) if body is not None else b""
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                owner.attempts += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path != "/fhir/RiskAssessment" or self.headers["Content-Type"] != "application/fhir+json":
                    self._answer(404, {"resourceType": "OperationOutcome", "issue": [{"code": "not-found"}]})
                    return
                if owner.attempts <= fail_first:
                    self._answer(503, {"resourceType": "OperationOutcome", "issue": [{"code": "transient"}]},
                                 {"Retry-After": "0"})
                    return
                resource = orjson.loads(body)
                try:
                    RiskAssessment.model_validate(resource)
                except ValueError:
                    self._answer(400, {"resourceType": "OperationOutcome", "issue": [{"code": "invalid"}]})
                    return
                if refuse:
                    self._answer(422, {"resourceType": "OperationOutcome", "issue": [{"code": "business-rule"}]})
                    return
                owner.created.append(resource)
                location = f"http://127.0.0.1:{owner.port}/fhir/RiskAssessment/ra{len(owner.created)}/_history/1"
                self._answer(201, resource | {"id": f"ra{len(owner.created)}"}, {"Location": location})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fhir_server() -> Iterator[FhirServer]:
    server = FhirServer(fail_first=1)
    yield server
    server.close()


def _resource(patient: str = "Patient/abc") -> dict[str, Any]:
    return {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": patient},
            "prediction": [{"probabilityDecimal": 0.4}]}


def test_the_publisher_retries_a_transient_failure_and_names_a_refusal_without_the_body(fhir_server):
    publisher = RiskAssessmentPublisher(fhir_server.url, backoff_s=0.0)
    published = publisher.publish(_resource())
    assert published.attempts == 2 and published.location == "RiskAssessment/ra1/_history/1"
    assert fhir_server.created[0]["subject"] == {"reference": "Patient/abc"}
    with pytest.raises(InvalidInput, match="Patient reference"):
        publisher.publish({"resourceType": "RiskAssessment", "status": "final",
                           "subject": {"identifier": {"system": "urn:vitalops:patient-key", "value": "k"}}})
    refusing = FhirServer(refuse=True)
    try:
        with pytest.raises(ServiceUnavailable, match=r"HTTP 422 \(business-rule\)") as refused:
            RiskAssessmentPublisher(refusing.url, backoff_s=0.0).publish(_resource("Patient/canary-777"))
        assert "canary-777" not in str(refused.value)
    finally:
        refusing.close()


def test_rest_predict_from_fhir_resources_publishes_its_risk_assessment(served, live_server, api_client, make_user,
                                                                        fhir_server):
    served.context.publisher = RiskAssessmentPublisher(fhir_server.url, backoff_s=0.0)
    live_server.server.config.app.state.serving = served.context
    _, key = make_user("clinician", "casey")
    table = served.training_set.table
    index = table.num_rows // 2
    patient_key, at = table.column("patient_key")[index].as_py(), table.column("index_time")[index].as_py()
    source_id = next(r["id"] for r in served.lake.resources if r["resourceType"] == "Patient"
                     and served.lake.pseudonymizer.patient_key(r["id"]) == patient_key)
    mine = [r for r in served.lake.resources if _subject(r) == source_id]
    response = api_client.post("/v1/models/deterioration/predict",
                               headers=bearer(key) | {"Content-Type": "application/json"},
                               content=orjson.dumps({"site": "north", "resources": mine, "at": at.isoformat()}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["publication"] == "queued"
    assert body["risk_assessment"]["subject"] == {"reference": f"Patient/{source_id}"}
    served.context.publications.join()
    assert [r["identifier"][0]["value"] for r in fhir_server.created] == [body["id"]]
    with served.database.session() as session:
        events = [e for e in list_events(session, object_id=body["id"]) if e.action.startswith("prediction.pub")]
    assert [(e.action, e.payload["location"]) for e in events] == [("prediction.published",
                                                                   "RiskAssessment/ra1/_history/1")]
    by_vector = api_client.post("/v1/models/deterioration/predict", headers=bearer(key),
                                json={"site": "north", "features": body["features"]})
    assert by_vector.json()["publication"] == "no_ehr_patient"
    served.context.publications.join()
    assert len(fhir_server.created) == 1
