"""The EHR's FHIR server: only the base URLs registered for its issuer are accepted, and a search
answered in pages is followed to its end on that server only, within bounds."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import func, select

from tests.cdshooks.conftest import FhirDouble, prefetch_for
from tests.cdshooks.spec_client import EhrKeys, check_cards
from vitalops.auth import SYSTEM
from vitalops.cdshooks import add_client
from vitalops.cdshooks.ehr import replay_at
from vitalops.cdshooks.prefetch import MAX_PAGES
from vitalops.db.tables.serving import PredictionRow

AUTH = {"access_token": "fhir-token-1", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
        "subject": "vitalops"}


def _predictions(cds) -> list[PredictionRow]:
    with cds.served.database.read_session() as session:
        return list(session.scalars(select(PredictionRow).order_by(PredictionRow.at)))


def _count(cds) -> int:
    with cds.served.database.read_session() as session:
        return int(session.scalar(select(func.count(PredictionRow.id))))


def _request(patient_id, prefetch, **extra):
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": patient_id}, "prefetch": prefetch, **extra}


def _recent(cds):
    """The patient's resources as the EHR knows them now: every time moved so the last update is a minute ago."""
    last = max(datetime.fromisoformat(r["meta"]["lastUpdated"]) for r in cds.resources if r.get("meta"))
    now = datetime.now(UTC)
    return replay_at(cds.resources, last, now - timedelta(minutes=1))


def _templates(cds, ehr=None):
    token = (ehr or cds.ehr).token(cds.base + "/cds-services")
    return cds.get("/cds-services", token=token).json()["services"][0]["prefetch"]


def test_a_fhir_server_off_the_issuers_list_is_refused_and_never_fetched(cds):
    ehr = EhrKeys(issuer="https://ehr-listed.test/", kid="listed-1")
    double = FhirDouble(cds.resources, token="fhir-token-1")
    try:
        with cds.served.database.session() as session:
            add_client(session, SYSTEM, ehr.issuer, site="north", jwks=ehr.jwks,
                       fhir_servers=["https://fhir.north.test/r4", double.url + "/"])
        prefetch = prefetch_for(_templates(cds, ehr), cds.resources, cds.patient_id)
        del prefetch["labs"]
        before = _count(cds)
        path = "/cds-services/deterioration"
        for server in ("http://127.0.0.1:9/fhir", double.url + "/other", "https://fhir.north.test/r4/x"):
            response = cds.post(path, _request(cds.patient_id, prefetch, fhirServer=server, fhirAuthorization=AUTH),
                                token=ehr.token(cds.base + path))
            assert response.status_code == 400, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "fhirServer" in response.json()["detail"] and server not in response.text
            assert response.json()["details"]["field"] == "fhirServer"
        assert double.requests == [] and _count(cds) == before
        # Listed (the trailing slash is not part of the comparison): fetched from, and scored.
        response = cds.post(path, _request(cds.patient_id, prefetch, fhirServer=double.url, fhirAuthorization=AUTH),
                            token=ehr.token(cds.base + path))
        assert response.status_code == 200, response.text
        assert [p.split("?")[0] for p in double.requests] == ["/Observation"]
        with cds.served.database.read_session() as session:
            from vitalops.cdshooks import list_clients

            client = next(c for c in list_clients(session) if c.issuer == ehr.issuer)
        assert client.to_dict()["fhir_servers"] == sorted([double.url, "https://fhir.north.test/r4"])
    finally:
        double.close()


def test_a_paged_search_is_followed_and_merged_and_scores_as_the_whole_prefetch(cds):
    resources = _recent(cds)
    templates = _templates(cds)
    full = prefetch_for(templates, resources, cds.patient_id)
    vitals, labs = len(full["vitals"]["entry"]), len(full["labs"]["entry"])
    page = vitals // 6 + 1  # vitals span six or seven pages
    assert vitals > 12
    response = cds.post("/cds-services/deterioration", _request(cds.patient_id, full))
    assert response.status_code == 200, response.text
    double = FhirDouble(resources, token="fhir-token-1", page_size=page)
    try:
        partial = dict(full)
        del partial["vitals"], partial["labs"]
        response = cds.post("/cds-services/deterioration",
                            _request(cds.patient_id, partial, fhirServer=double.url, fhirAuthorization=AUTH))
        assert response.status_code == 200, response.text
        check_cards(response.json())
        pages = [p for p in double.requests if "_getpagesoffset=" in p]
        assert len(pages) >= 5
        # each search's first page, then each next link once
        assert len(double.requests) == math.ceil(vitals / page) + max(1, math.ceil(labs / page))
    finally:
        double.close()
    whole, paged = _predictions(cds)[-2:]
    # The same vector (time-since features move with the clock between the two calls, by a hair).
    paged_vector, whole_vector = orjson.loads(paged.features_json), orjson.loads(whole.features_json)
    assert [v is None for v in paged_vector] == [v is None for v in whole_vector]
    assert [v for v in paged_vector if v is not None] == pytest.approx([v for v in whole_vector if v is not None],
                                                                       rel=1e-4)
    assert sum(v is not None for v in paged_vector) > len(paged_vector) // 2
    assert paged.score == pytest.approx(whole.score, abs=1e-4)


def test_a_next_page_on_another_origin_or_beyond_the_page_bound_is_refused(cds):
    resources = _recent(cds)
    partial = prefetch_for(_templates(cds), resources, cds.patient_id)
    del partial["vitals"]
    before = _count(cds)
    elsewhere = FhirDouble(resources, token="fhir-token-1")
    double = FhirDouble(resources, token="fhir-token-1", page_size=3, next_origin=elsewhere.url)
    try:
        response = cds.post("/cds-services/deterioration",
                            _request(cds.patient_id, partial, fhirServer=double.url, fhirAuthorization=AUTH))
        assert response.status_code == 412, response.text
        assert response.json()["details"]["reason"] == "fhir_paging_off_origin"
        assert elsewhere.requests == [] and len(double.requests) == 1
    finally:
        double.close()
        elsewhere.close()
    vitals = prefetch_for(_templates(cds), resources, cds.patient_id)["vitals"]["entry"]
    assert len(vitals) > MAX_PAGES
    double = FhirDouble(resources, token="fhir-token-1", page_size=1)
    try:
        response = cds.post("/cds-services/deterioration",
                            _request(cds.patient_id, partial, fhirServer=double.url, fhirAuthorization=AUTH))
        assert response.status_code == 412, response.text
        assert response.json()["details"]["reason"] == "fhir_paging_too_long"
        assert len(double.requests) == MAX_PAGES
    finally:
        double.close()
    assert _count(cds) == before
