"""CDS Hooks 2.0.1 end to end through the API, checked by a client written to the specification."""

from __future__ import annotations

import time
import uuid

import jwt
import orjson
from sqlalchemy import func, select

from tests.cdshooks.conftest import FhirDouble, prefetch_for
from tests.cdshooks.spec_client import EhrKeys, check_cards, check_discovery, feedback_item
from vitalops.audit import list_events
from vitalops.db.tables.cdshooks import CardFeedbackRow
from vitalops.db.tables.serving import PredictionRow
from vitalops.review import ReviewPolicy, list_items


def _predictions(cds) -> int:
    with cds.served.database.read_session() as session:
        return int(session.scalar(select(func.count(PredictionRow.id))))


def _request(cds, prefetch, **extra):
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": cds.patient_id}, "prefetch": prefetch, **extra}


def _discovered(cds) -> dict:
    response = cds.get("/cds-services")
    assert response.status_code == 200, response.text
    check_discovery(response.json())
    return response.json()["services"][0]


def test_discovery_lists_a_patient_view_service_with_templates_from_the_features(cds):
    service = _discovered(cds)
    assert service["hook"] == "patient-view" and service["id"] == "deterioration" and service["title"]
    prefetch = service["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    assert set(prefetch) == {"patient", "vitals", "labs", "conditions", "medications", "encounters"}
    assert "http://loinc.org|8867-4" in prefetch["vitals"] and "&date=ge" in prefetch["vitals"]
    assert "http://loinc.org|2524-7" in prefetch["labs"]


def test_discovery_is_an_empty_list_when_nothing_is_deployed(cds):
    service = _discovered(cds)  # what is deployed is known, and kept, before the change
    prefetch = prefetch_for(service["prefetch"], cds.resources, cds.patient_id)
    with cds.served.database.session() as session:
        from vitalops.db.tables.governance import DeploymentEventRow

        session.query(DeploymentEventRow).delete()
    assert cds.get("/cds-services").json() == {"services": []}
    assert cds.post("/cds-services/deterioration", _request(cds, prefetch)).status_code == 404


def test_a_call_gives_a_valid_card_of_that_patient_and_feedback_is_stored_once(cds):
    service = _discovered(cds)
    before = _predictions(cds)
    response = cds.post("/cds-services/deterioration", _request(cds, prefetch_for(service["prefetch"],
                                                                                   cds.resources, cds.patient_id)))
    assert response.status_code == 200, response.text
    cards = check_cards(response.json())
    assert len(cards) == 1 and _predictions(cds) == before + 1
    card = cards[0]
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert resource["resourceType"] == "RiskAssessment"
    assert resource["subject"] == {"reference": f"Patient/{cds.patient_id}"}
    assert cds.other_patient["id"] not in orjson.dumps(card).decode()
    assert "/v1/models/deterioration/versions/1/card" in card["source"]["url"]
    for outcome in ("accepted", "overridden"):
        item = feedback_item(card, outcome, when=f"2026-12-01T10:0{len(outcome) % 10}:00Z")
        first = cds.post("/cds-services/deterioration/feedback", {"feedback": [item]})
        again = cds.post("/cds-services/deterioration/feedback", {"feedback": [item]})
        assert first.status_code == 200 and first.json() == {"stored": 1, "duplicates": 0}
        assert again.json() == {"stored": 0, "duplicates": 1}
    with cds.served.database.read_session() as session:
        rows = list(session.scalars(select(CardFeedbackRow)))
    assert len(rows) == 2 and {r.outcome for r in rows} == {"accepted", "overridden"}
    assert {r.prediction_id for r in rows} == {f"pred_{uuid.UUID(card['uuid']).hex}"}
    assert next(r for r in rows if r.outcome == "overridden").override_display


def test_resources_of_another_patient_are_refused_and_never_scored(cds):
    service = _discovered(cds)
    prefetch = prefetch_for(service["prefetch"], cds.resources, cds.patient_id)
    prefetch["conditions"]["entry"].append({"resource": {
        "resourceType": "Condition", "id": "x", "subject": {"reference": f"Patient/{cds.other_patient['id']}"}}})
    before = _predictions(cds)
    response = cds.post("/cds-services/deterioration", _request(cds, prefetch))
    assert response.status_code == 400 and response.headers["content-type"].startswith("application/problem+json")
    assert "prefetch" in response.json()["detail"] and "conditions" in response.json()["detail"]
    assert cds.other_patient["id"] not in response.text
    assert _predictions(cds) == before


def test_bad_input_is_problem_json_and_leaves_no_log_row(cds):
    service = _discovered(cds)
    prefetch = prefetch_for(service["prefetch"], cds.resources, cds.patient_id)
    before = _predictions(cds)
    cases = {
        "/cds-services/no-such-model": (_request(cds, prefetch), 404),
        "/cds-services/deterioration": ({"hook": "patient-view", "hookInstance": "1", "context": {}}, 400),
    }
    for path, (body, status) in cases.items():
        response = cds.post(path, body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    assert "context" in cds.post("/cds-services/deterioration", cases["/cds-services/deterioration"][0]).text
    token = cds.ehr.token(cds.base + "/cds-services/deterioration")
    not_json = cds.client.post("/cds-services/deterioration", content=b"{",
                               headers={"Authorization": f"Bearer {token}"})
    assert not_json.status_code == 400
    missing = dict(prefetch)
    del missing["labs"]
    response = cds.post("/cds-services/deterioration", _request(cds, missing))
    assert response.status_code == 412 and "prefetch.labs" in response.text
    assert _predictions(cds) == before


def test_a_missing_key_is_fetched_from_the_fhir_server_with_the_token(cds):
    service = _discovered(cds)
    prefetch = prefetch_for(service["prefetch"], cds.resources, cds.patient_id)
    del prefetch["labs"], prefetch["vitals"]
    double = FhirDouble(cds.resources, token="fhir-token-1")
    try:
        auth = {"access_token": "fhir-token-1", "token_type": "Bearer", "expires_in": 300,
                "scope": "patient/*.read", "subject": "vitalops"}
        response = cds.post("/cds-services/deterioration",
                            _request(cds, prefetch, fhirServer=double.url, fhirAuthorization=auth))
        assert response.status_code == 200, response.text
        check_cards(response.json())
        assert sorted(p.split("?")[0] for p in double.requests) == ["/Observation", "/Observation"]
        refused = cds.post("/cds-services/deterioration",
                           _request(cds, prefetch, fhirServer=double.url, fhirAuthorization=auth | {
                               "access_token": "wrong"}))
        assert refused.status_code == 412
    finally:
        double.close()


def _hs256_with_public_key(ehr: EhrKeys, aud: str) -> str:
    from cryptography.hazmat.primitives import serialization

    pem = ehr.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": ehr.kid}
    payload = {"iss": ehr.issuer, "aud": aud, "iat": int(time.time()), "exp": int(time.time()) + 60,
               "jti": uuid.uuid4().hex}
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(payload))}"
    return f"{signing}.{b64(hmac.new(pem, signing.encode(), hashlib.sha256).digest())}"


def test_every_untrusted_jwt_is_refused_naming_the_check_and_audited(cds):
    aud = cds.base + "/cds-services"
    ehr = cds.ehr
    stranger = EhrKeys(issuer="https://stranger.test/")
    replayed = ehr.token(aud)
    assert cds.get("/cds-services", token=replayed).status_code == 200
    unsigned = jwt.encode({"iss": ehr.issuer, "aud": aud, "iat": int(time.time()), "exp": int(time.time()) + 60,
                           "jti": "n"}, None, algorithm="none", headers={"kid": ehr.kid})
    cases = {
        "alg": [unsigned, _hs256_with_public_key(ehr, aud)],
        "kid": [ehr.token(aud, headers={"kid": "unknown"})],
        "jku": [ehr.token(aud, headers={"jku": "https://attacker.test/jwks.json"})],
        "aud": [ehr.token(cds.base + "/cds-services/deterioration"), ehr.token("https://other.test/cds-services")],
        "exp": [ehr.token(aud, iat=int(time.time()) - 400, exp=int(time.time()) - 100),
                ehr.token(aud, lifetime=3600)],
        "jti": [replayed],
        "iss": [stranger.token(aud)],
        "malformed": ["not-a-jwt"],
    }
    for check, tokens in cases.items():
        for token in tokens:
            response = cds.get("/cds-services", token=token)
            assert response.status_code == 401, (check, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert f"({check})" in response.json()["detail"], (check, response.json())
    assert cds.client.get("/cds-services").status_code == 401
    cds.app.state.denials.flush(cds.served.database, everything=True)
    with cds.served.database.read_session() as session:
        reasons = {e.payload["reason"] for e in list_events(session, action="auth.failed")}
    assert {f"jwt.{check}" for check in cases} | {"jwt.missing"} <= reasons


def test_uncertain_predictions_go_to_the_review_queue_and_a_clinician_decides(cds, make_user):
    service = _discovered(cds)
    cds.app.state.cdshooks.hooks.policy = ReviewPolicy(margin=1.0)  # every score is near the threshold
    response = cds.post("/cds-services/deterioration",
                        _request(cds, prefetch_for(service["prefetch"], cds.resources, cds.patient_id)))
    card = check_cards(response.json())[0]
    assert "Queued for clinician review" in card["detail"]
    with cds.served.database.read_session() as session:
        items = list_items(session)
    assert len(items) == 1 and items[0].prediction_id == f"pred_{uuid.UUID(card['uuid']).hex}"
    assert items[0].reasons[0]["rule"] == "near_threshold"
    assert cds.get("/metrics").text.count("vitalops_review_queue_size 1.0") == 1
    _, key = make_user("clinician", "casey")
    _, outsider = make_user("ehr", "ehr-other")
    path = f"/v1/review/{items[0].id}/decision"
    assert cds.client.get("/v1/review", headers={"Authorization": f"Bearer {outsider}"}).status_code == 403
    listed = cds.client.get("/v1/review", headers={"Authorization": f"Bearer {key}"}).json()["items"]
    assert [i["prediction_id"] for i in listed] == [items[0].prediction_id] and "mrn" not in str(listed).lower()
    decided = cds.client.post(path, json={"decision": "override", "reason": "comfort care"},
                              headers={"Authorization": f"Bearer {key}"})
    assert decided.status_code == 200 and decided.json()["state"] == "overridden"
    again = cds.client.post(path, json={"decision": "accept", "reason": "x"},
                            headers={"Authorization": f"Bearer {key}"})
    assert again.status_code == 409
    with cds.served.database.read_session() as session:
        event = list_events(session, action="review.decided")[0]
    assert event.object_id == items[0].prediction_id and event.actor == "casey"


def test_a_jti_used_at_one_worker_is_refused_at_another(cds):
    from vitalops.cdshooks import Verifier, record_jti
    from vitalops.errors import Unauthenticated

    aud = cds.base + "/cds-services"
    token = cds.ehr.token(aud)
    assert cds.get("/cds-services", token=token).status_code == 200
    other_worker = Verifier(cds.served.database)

    def record(issuer, jti, expires_at):
        with cds.served.database.session() as session:
            return record_jti(session, issuer, jti, expires_at)

    try:
        other_worker.verify(token, aud, record)
    except Unauthenticated as exc:
        assert exc.details["check"] == "jti"
    else:
        raise AssertionError("a replay at another worker was accepted")
