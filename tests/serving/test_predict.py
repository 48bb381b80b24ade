"""Predictions through the service and the real API: routing, exact scores and reasons, the log, FHIR."""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import orjson
import pytest
from fhir.resources.R4B.riskassessment import RiskAssessment

from tests.conftest import bearer
from tests.features.test_online import _subject
from vitalops.artifacts import read_bundle
from vitalops.audit import list_events
from vitalops.auth import SYSTEM, Principal, Role
from vitalops.db.tables.serving import PredictionRow
from vitalops.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from vitalops.registry.versions import get_version
from vitalops.serving import PredictionRequest, get_prediction, predict, recompute, record_outcome, site_deployments
from vitalops.serving.routing import on_challenger_side
from vitalops.sites import create_site

CLINICIAN = Principal(name="casey", roles=frozenset({Role.CLINICIAN}), credential="key:casey")
NOW = datetime(2026, 1, 15, tzinfo=UTC)


def _row(served, index: int = 0) -> dict[str, float | None]:
    table = served.training_set.table
    return {name: table.column(name)[index].as_py() for name in served.training_set.feature_names}


def _patient_keys(served) -> list[str]:
    return sorted(set(served.training_set.table.column("patient_key").to_pylist()))


def test_a_feature_vector_scores_exactly_with_reasons_that_add_up(served):
    features = _row(served, 5)
    outcome = predict(served.database, served.context, CLINICIAN, "deterioration",
                      PredictionRequest(site="north", features=features))
    prediction = outcome.prediction
    matrix = np.asarray([[np.nan if v is None else v for v in features.values()]])
    assert abs(prediction.score - served.models[1].predict_proba(matrix)[0, 1]) < 1e-12
    assert prediction.version == 1 and prediction.mode == "champion" and prediction.served
    assert prediction.decision == (prediction.score >= 0.2)
    assert prediction.band == ("high" if prediction.score >= 0.2 else "moderate" if prediction.score >= 0.1 else "low")
    explanation = prediction.explanation
    assert explanation.method == "linear.exact/1" and len(explanation.factors) == 5
    logit = math.log(prediction.score / (1 - prediction.score))
    assert explanation.raw_score == pytest.approx(logit, abs=1e-9)
    units = {f.feature: f.unit for f in explanation.factors}
    assert all(units[name] == "/min" for name in units if name.startswith("heart_rate_last"))
    with served.database.session() as session:
        row = session.get_one(PredictionRow, prediction.id)
        assert row.served and row.mode == "champion" and row.artifact_sha256 == prediction.artifact_sha256
        created = list_events(session, action="prediction.created")[0]
    assert created.object_id == prediction.id and created.credential == "key:casey"
    score, recomputed = recompute(served.database, served.context.runtime, prediction.id)
    assert score == prediction.score and recomputed == explanation


def test_a_patient_key_and_fhir_resources_give_the_offline_row(served):
    table = served.training_set.table
    keys = table.column("patient_key").to_pylist()
    index = len(keys) // 2
    key, at = keys[index], table.column("index_time")[index].as_py()
    by_key = predict(served.database, served.context, CLINICIAN, "deterioration",
                     PredictionRequest(site="north", patient_key=key, at=at)).prediction
    expected = _row(served, index)
    assert by_key.features == expected and by_key.input_kind == "patient"
    source_id = next(r["id"] for r in served.lake.resources if r["resourceType"] == "Patient"
                     and served.lake.pseudonymizer.patient_key(r["id"]) == key)
    mine = [r for r in served.lake.resources if _subject(r) == source_id]
    by_fhir = predict(served.database, served.context, CLINICIAN, "deterioration",
                      PredictionRequest(site="north", resources=mine, at=at)).prediction
    assert by_fhir.patient_key == key and by_fhir.score == pytest.approx(by_key.score, abs=1e-12)
    other = next(r for r in served.lake.resources if r["resourceType"] == "Patient" and r["id"] != source_id)
    with pytest.raises(InvalidInput, match="patients"):
        predict(served.database, served.context, CLINICIAN, "deterioration",
                PredictionRequest(site="north", resources=[*mine, other], at=at))
    with pytest.raises(NotFound):
        predict(served.database, served.context, CLINICIAN, "deterioration",
                PredictionRequest(site="north", patient_key="0" * 64, at=at))


def test_canary_routing_is_stable_per_patient_and_within_binomial_error(served):
    served.deploy(2, "canary:20")
    keys = [secrets.token_hex(32) for _ in range(4000)]
    with served.database.session() as session:
        deployment = site_deployments(session, "deterioration", "north")
    assert deployment.challenger is not None
    event_id = deployment.challenger[2]
    share = np.mean([on_challenger_side(event_id, key, 20) for key in keys])
    assert abs(share - 0.2) < 3 * math.sqrt(0.2 * 0.8 / len(keys))
    features = _row(served)
    sides = {}
    for key in keys[:40]:
        outcome = predict(served.database, served.context, CLINICIAN, "deterioration",
                          PredictionRequest(site="north", features=features, patient_key=key))
        again = predict(served.database, served.context, CLINICIAN, "deterioration",
                        PredictionRequest(site="north", features=features, patient_key=key))
        assert outcome.prediction.version == again.prediction.version
        sides[key] = outcome.prediction.version
        assert (outcome.prediction.version == 2) == on_challenger_side(event_id, key, 20)
    assert set(sides.values()) == {1, 2}


def test_a_shadow_is_logged_after_the_response_and_never_returned(served):
    served.deploy(2, "shadow")
    outcome = predict(served.database, served.context, CLINICIAN, "deterioration",
                      PredictionRequest(site="north", features=_row(served), patient_key="p1"))
    assert outcome.prediction.version == 1 and len(outcome.deferred) == 1
    with served.database.session() as session:
        assert session.query(PredictionRow).count() == 1  # the shadow has not run yet
    outcome.run_deferred()
    with served.database.session() as session:
        shadow = session.query(PredictionRow).filter(PredictionRow.served.is_(False)).one()
    assert shadow.mode == "shadow" and shadow.patient_key == "p1"


def test_bad_requests_are_named_and_leave_no_log_row(served):
    bad = [
        (PredictionRequest(site="north", features={"nope": 1.0}), InvalidInput, "not inputs"),
        (PredictionRequest(site="north", features={}), InvalidInput, "missing"),
        (PredictionRequest(site="nowhere", features=_row(served)), InvalidInput, "not registered"),
        (PredictionRequest(site="north"), InvalidInput, "give one of"),
    ]
    for request, error, message in bad:
        with pytest.raises(error, match=message):
            predict(served.database, served.context, CLINICIAN, "deterioration", request)
    with served.database.session() as session:
        create_site(session, SYSTEM, "east")
    with pytest.raises(Conflict, match="no champion"):
        predict(served.database, served.context, CLINICIAN, "deterioration",
                PredictionRequest(site="east", features=_row(served)))
    with served.database.session() as session:
        assert session.query(PredictionRow).count() == 0


def test_a_corrupted_artifact_is_never_served(served):
    served.deploy(2, "champion", "south")
    with served.database.session() as session:
        artifact = get_version(session, "deterioration", 2).artifact_sha256
    store = served.context.runtime.store
    blob = Path(urlparse(store.uri(read_bundle(store, artifact).model_sha256)).path)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-5] + b"xxxxx")
    with pytest.raises(ServiceUnavailable, match="fails verification"):
        predict(served.database, served.context, CLINICIAN, "deterioration",
                PredictionRequest(site="south", features=_row(served)))
    with served.database.session() as session:
        assert session.query(PredictionRow).count() == 0


def test_outcomes_are_idempotent_and_reads_are_audited(served):
    prediction = predict(served.database, served.context, CLINICIAN, "deterioration",
                         PredictionRequest(site="north", features=_row(served), patient_key="p9")).prediction
    first = record_outcome(served.database, CLINICIAN, prediction.id, outcome=1, observed_at=NOW, source="ehr")
    again = record_outcome(served.database, CLINICIAN, prediction.id, outcome=1, observed_at=NOW, source="ehr")
    assert first["recorded"] and not again["recorded"]
    with pytest.raises(Conflict):
        record_outcome(served.database, CLINICIAN, prediction.id, outcome=0, observed_at=NOW, source="ehr")
    read = get_prediction(served.database, CLINICIAN, prediction.id)
    assert read.score == prediction.score and read.explanation == prediction.explanation
    with served.database.session() as session:
        assert list_events(session, action="prediction.read")[0].payload["patient_key"] == "p9"


def test_rest_predict_returns_a_valid_risk_assessment(served, live_server, api_client, make_user):
    live_server.server.config.app.state.serving = served.context
    _, key = make_user("clinician", "casey")
    response = api_client.post("/v1/models/deterioration/predict", headers=bearer(key),
                               json={"site": "north", "features": _row(served, 3)})
    assert response.status_code == 200, response.text
    body = response.json()
    resource = RiskAssessment.model_validate(body["risk_assessment"])
    assert resource.status == "final"
    assert float(resource.prediction[0].probabilityDecimal) == pytest.approx(body["score"], abs=1e-6)
    assert body["risk_assessment"]["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == body["band"]
    record = api_client.get(f"/v1/predictions/{body['id']}", headers=bearer(key), params={"format": "fhir"})
    assert record.status_code == 200 and record.json()["resourceType"] == "RiskAssessment"
    bad = api_client.post("/v1/models/deterioration/predict", headers=bearer(key),
                          json={"site": "north", "features": {"nope": 1}})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    batch = api_client.post("/v1/models/deterioration/predict/batch", headers=bearer(key),
                            json={"rows": [{"site": "north", "features": _row(served, i)} for i in range(3)]})
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 3
    outcome = api_client.post("/v1/outcomes", headers=bearer(key),
                              json={"prediction_id": body["id"], "outcome": 1, "observed_at": NOW.isoformat()})
    assert outcome.status_code == 201 and orjson.loads(outcome.content)["recorded"] is True
    served.deploy(2, "shadow")
    shadowed = api_client.post("/v1/models/deterioration/predict", headers=bearer(key),
                               json={"site": "north", "patient_key": "p-shadow", "features": _row(served, 4)})
    assert shadowed.status_code == 200 and shadowed.json()["version"] == 1
    served.context.shadows.join()
    with served.database.session() as session:
        shadow = session.query(PredictionRow).filter(PredictionRow.mode == "shadow").one()
    assert shadow.patient_key == "p-shadow" and not shadow.served
    _, auditor_key = make_user("auditor", "audrey")
    denied = api_client.post("/v1/models/deterioration/predict", headers=bearer(auditor_key),
                             json={"site": "north", "features": _row(served, 3)})
    assert denied.status_code == 403
