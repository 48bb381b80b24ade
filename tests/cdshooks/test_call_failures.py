"""CDS Hooks calls refused or failed outside scoring are counted against the service's model at the EHR's
site (version 0), through a real server on loopback, and monitoring reports them in its error rates
beside the successful calls; JWT refusals and service ids that name no model are not counted, and the
counters hold no patient data."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import orjson
import pytest
from sqlalchemy import func, select, text

from tests.cdshooks.conftest import FhirDouble, prefetch_for
from tests.governance.plans import SCIENTIST
from tests.monitoring.conftest import OPERATOR
from tests.serving.test_failures import _model_blob
from vitalops.artifacts import open_store
from vitalops.cdshooks.prefetch import FhirFetcher
from vitalops.core.clock import utcnow
from vitalops.db.tables.registry import ModelRow
from vitalops.db.tables.serving import PredictionRow, ServingErrorCountRow
from vitalops.monitoring.engine import parse_window, run_monitoring
from vitalops.monitoring.metrics import MIN_ROWS_PROPORTION
from vitalops.monitoring.results import read_results
from vitalops.registry.schemas import ModelCreate
from vitalops.registry.versions import create_model
from vitalops.review import ReviewPolicy
from vitalops.serving.failures import hour_start
from vitalops.serving.log_writer import LogWriter

PATH = "/cds-services/deterioration"
FHIR_TOKEN = "fhir-token-1"


def _request(cds, prefetch, **extra):
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": cds.patient_id}, "prefetch": prefetch, **extra}


def _auth(token: str = FHIR_TOKEN) -> dict[str, object]:
    return {"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
            "subject": "vitalops"}


def _counters(cds) -> list[tuple[str, int, str, bool, str, int, int]]:
    with cds.served.database.read_session() as session:
        rows = session.execute(select(ServingErrorCountRow, ModelRow.name).join(
            ModelRow, ModelRow.id == ServingErrorCountRow.model_id)).all()
        return sorted((name, r.version, r.site, r.served, r.code, r.http_status, r.count) for r, name in rows)


def _logged(cds) -> int:
    with cds.served.database.read_session() as session:
        return int(session.scalar(select(func.count(PredictionRow.id))))


def _post_raw(cds, path: str, content: bytes, token: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    return cds.client.post(path, content=content, headers=headers)


def _refused_calls(cds, prefetch) -> dict[str, int]:
    """One call of each refusal the service counts, each checked for its status; their codes."""
    another = orjson.loads(orjson.dumps(prefetch))
    another["conditions"]["entry"].append({"resource": {
        "resourceType": "Condition", "id": "x", "subject": {"reference": f"Patient/{cds.other_patient['id']}"}}})
    missing = {key: value for key, value in prefetch.items() if key != "labs"}
    fetched = {key: value for key, value in prefetch.items() if key not in ("labs", "vitals")}
    double = FhirDouble(cds.resources, token=FHIR_TOKEN)
    try:
        cases = [
            (_request(cds, prefetch) | {"context": {}}, 400),  # not a CDS Hooks request
            (_request(cds, another), 400),  # resources of another patient
            (_request(cds, missing), 412),  # a prefetch missing, nothing to fetch it with
            (_request(cds, fetched, fhirServer=double.url, fhirAuthorization=_auth("expired")), 412),
        ]
        for body, status in cases:
            response = cds.post(PATH, body)
            assert response.status_code == status, response.text
    finally:
        double.close()
    not_json = _post_raw(cds, PATH, b"{", cds.ehr.token(cds.base + PATH))
    assert not_json.status_code == 400
    return {"bad_request": 3, "precondition_failed": 2}


def _uncounted_calls(cds, prefetch) -> None:
    """JWT refusals (401) and a service of no model (404): neither is a model's failure."""
    body = orjson.dumps(_request(cds, prefetch))
    assert _post_raw(cds, PATH, body, None).status_code == 401
    assert _post_raw(cds, PATH, body, cds.ehr.token(cds.base + "/cds-services/other")).status_code == 401
    assert _post_raw(cds, PATH, body, "not-a-jwt").status_code == 401
    assert cds.post("/cds-services/no-such-model", _request(cds, prefetch)).status_code == 404


def _monitor(cds, settings, first: datetime, last: datetime) -> list:
    """Run monitoring over the days of the calls; the daily results of the model at north."""
    since = first.replace(hour=0, minute=0, second=0, microsecond=0)
    until = last.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    run_monitoring(cds.served.database, OPERATOR, lake_root=cds.served.lake.lake_root,
                   store=open_store(settings.artifacts_root), model="deterioration", window=parse_window("1d"),
                   since=since, now=until + timedelta(hours=1))
    with cds.served.database.read_session() as session:
        return [r for r in read_results(session, model="deterioration", site="north", version=0)
                if r.metric_id in ("ops.error_rate", "ops.input_error_rate")]


def test_refused_calls_count_in_the_models_input_error_rate_at_the_ehrs_site(cds, settings):
    cds.served.context.writer = LogWriter(cds.served.database)  # as a server runs: the group commit
    service = cds.get("/cds-services").json()["services"][0]
    prefetch = prefetch_for(service["prefetch"], cds.resources, cds.patient_id)
    first = utcnow()
    succeeded = MIN_ROWS_PROPORTION
    for _ in range(succeeded):
        response = cds.post(PATH, _request(cds, prefetch))
        assert response.status_code == 200, response.text
    refused = _refused_calls(cds, prefetch)
    _uncounted_calls(cds, prefetch)
    last = utcnow()
    assert _logged(cds) == succeeded  # a refused call leaves no log row
    hours = {hour_start(first), hour_start(last)}
    counted = _counters(cds)
    by_code: dict[str, int] = {}
    for name, version, site, served, code, status, count in counted:
        assert (name, version, site, served) == ("deterioration", 0, "north", True)
        assert status == {"bad_request": 400, "precondition_failed": 412}[code]
        by_code[code] = by_code.get(code, 0) + count
    assert by_code == refused and len(counted) <= 2 * len(hours)
    with cds.served.database.read_session() as session:
        stored = {str(v) for row in session.scalars(select(ServingErrorCountRow)) for v in vars(row).values()}
    assert not {cds.patient_id, cds.other_patient["id"]} & stored

    results = _monitor(cds, settings, first, last)
    failures = sum(refused.values())
    assert sum(r.n for r in results if r.metric_id == "ops.input_error_rate") == succeeded + failures
    for result in results:
        details = result.details
        assert details["server_errors"] == 0
        assert result.n == details["online_predictions"] + details["input_errors"]
    input_rates = [r for r in results if r.metric_id == "ops.input_error_rate"]
    assert sum(r.details["online_predictions"] for r in input_rates) == succeeded
    assert sum(r.details["input_errors"] for r in input_rates) == failures
    if len(input_rates) == 1:  # the calls did not straddle a UTC midnight
        [rate] = input_rates
        assert rate.value == pytest.approx(failures / (succeeded + failures)) and rate.status == "ok"
        assert rate.details["errors_by_code"] == refused
        [server] = [r for r in results if r.metric_id == "ops.error_rate"]
        assert server.value == 0.0 and server.n == succeeded + failures


def test_an_unexpected_failure_before_scoring_is_a_server_error_of_the_model(cds):
    service = cds.get("/cds-services").json()["services"][0]
    prefetch = prefetch_for(service["prefetch"], cds.resources, cds.patient_id)
    del prefetch["labs"]
    broken = httpx.Client()
    broken.close()  # a client that can no longer send: not an HTTP error of the FHIR server
    cds.app.state.cdshooks.hooks.fetcher = FhirFetcher(broken)
    response = cds.post(PATH, _request(cds, prefetch, fhirServer="http://127.0.0.1:9", fhirAuthorization=_auth()))
    assert response.status_code == 500
    assert [c[4:] for c in _counters(cds)] == [("internal_error", 500, 1)]
    assert _logged(cds) == 0


def test_a_service_of_a_model_not_deployed_is_counted_against_that_model(cds):
    with cds.served.database.session() as session:
        create_model(session, SCIENTIST, ModelCreate(name="sepsis", intended_use="early warning",
                                                     clinical_owner="ward", target_population="adult inpatients",
                                                     output_meaning="sepsis within 24 hours"))
    response = cds.post("/cds-services/sepsis", _request(cds, {}))
    assert response.status_code == 404
    assert _counters(cds) == [("sepsis", 0, "north", True, "not_found", 404, 1)]


def test_a_failure_while_scoring_is_counted_once_by_scoring_against_its_version(cds):
    service = cds.get("/cds-services").json()["services"][0]
    prefetch = prefetch_for(service["prefetch"], cds.resources, cds.patient_id)
    blob = _model_blob(cds.served, 1)
    blob.write_bytes(blob.read_bytes()[:-5] + b"xxxxx")  # before this worker first loads it
    response = cds.post(PATH, _request(cds, prefetch))
    assert response.status_code == 503
    assert _counters(cds) == [("deterioration", 1, "north", True, "service_unavailable", 503, 1)]


def test_a_failure_after_the_prediction_was_logged_is_counted_against_the_model(cds):
    service = cds.get("/cds-services").json()["services"][0]
    prefetch = prefetch_for(service["prefetch"], cds.resources, cds.patient_id)
    cds.app.state.cdshooks.hooks.policy = ReviewPolicy(margin=1.0)  # every card is queued for review
    with cds.served.database.session() as session:  # the review queue's table is gone: queueing fails
        session.execute(text("ALTER TABLE review_items RENAME TO review_items_gone"))
    response = cds.post(PATH, _request(cds, prefetch))
    # SQLite's "no such table" is an OperationalError (503), PostgreSQL's an unexpected one (500)
    answered = (response.json()["code"], response.status_code)
    assert answered in {("service_unavailable", 503), ("internal_error", 500)}
    assert _logged(cds) == 1  # the prediction, and its failure beside it
    assert _counters(cds) == [("deterioration", 0, "north", True, *answered, 1)]
